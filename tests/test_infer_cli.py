"""`python -m bot infer`: one-shot and JSONL inference over the registry, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.infer_cli import main
from tests.support.models import CONLL_LABELS, SST2_LABELS


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HFCORD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HFCORD_TORCH_THREADS", "1")
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sentiment_json(capsys: pytest.CaptureFixture[str], tiny_sentiment_dir: Path) -> None:
    code, out, _ = run(
        capsys,
        "sentiment",
        "--model",
        str(tiny_sentiment_dir),
        "--text",
        "so good",
        "--json",
        "--top-k",
        "2",
    )
    assert code == 0
    result = json.loads(out)
    assert result["label"] in SST2_LABELS
    assert {s["label"] for s in result["scores"]} == set(SST2_LABELS)


def test_qa_from_a_context_file(
    capsys: pytest.CaptureFixture[str], tiny_qa_dir: Path, tmp_path: Path
) -> None:
    context = tmp_path / "notes.txt"
    context.write_text("The meeting is on Tuesday in room four.", encoding="utf-8")
    code, out, _ = run(
        capsys,
        "qa",
        "--model",
        str(tiny_qa_dir),
        "--question",
        "When is the meeting?",
        "--context-file",
        str(context),
        "--json",
    )
    assert code == 0
    [answer] = json.loads(out)["answers"]
    text = context.read_text(encoding="utf-8")
    assert text[answer["start"] : answer["end"]] == answer["text"]


def test_jsonl_gives_one_result_per_line_in_order(
    capsys: pytest.CaptureFixture[str], tiny_ner_dir: Path, tmp_path: Path
) -> None:
    lines = [
        {"text": "Angela Merkel visited Paris"},
        {"text": ""},
        {"prompt": "wrong field"},
        {"text": "Google opened an office in Zurich"},
    ]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "ner", "--model", str(tiny_ner_dir), "--jsonl", str(inputs))
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 4
    assert code == 1  # some lines failed
    assert "entities" in results[0] and "entities" in results[3]
    assert results[1]["type"] == "InvalidInput" and "empty" in results[1]["error"]
    assert "text" in results[2]["error"]
    for result, line in ((results[0], lines[0]), (results[3], lines[3])):
        for entity in result["entities"]:
            assert line["text"][entity["start"] : entity["end"]] == entity["word"]
            assert "B-" + entity["entity_group"] in CONLL_LABELS


def test_generate_json_and_streaming(
    capsys: pytest.CaptureFixture[str], tiny_gpt2_dir: Path
) -> None:
    common = [
        "generate",
        "--model",
        str(tiny_gpt2_dir),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "6",
    ]
    code, out, _ = run(capsys, *common, "--temperature", "0", "--json")
    assert code == 0
    stats = json.loads(out)
    assert 1 <= stats["new_tokens"] <= 6 and stats["finish_reason"] in {"length", "stop"}
    code, out, _ = run(capsys, *common, "--temperature", "0")
    assert code == 0
    assert out.startswith(stats["text"])  # the text streams first, then a stats line
    assert "tokens" in out.splitlines()[-1]


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "sentiment")
    assert code == 2 and "--text" in err
    code, _, err = run(capsys, "qa", "--question", "Who?")
    assert code == 2 and "--context" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    code, _, err = run(capsys, "ner", "--jsonl", str(bad))
    assert code == 2 and "bad.jsonl:1" in err
    code, _, err = run(capsys, "ner", "--jsonl", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in err


def test_unknown_model_offline_fails_with_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sentiment", "--model", "nobody/not-a-model", "--text", "hi")
    assert code == 1
    assert "nobody/not-a-model" in err and "HF_HUB_OFFLINE" in err
    assert "Traceback" not in err and out == ""
