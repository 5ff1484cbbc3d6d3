"""`python -m bot infer`: one-shot and JSONL inference over the registry, on tiny models."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.infer_cli import answer_lines, answerer, build_parser, main
from models.registry import ModelRegistry
from models.specs import Task, default_spec
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


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_answers_every_line_of_a_long_file(
    capsys: pytest.CaptureFixture[str], tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    # Far more lines than the sentiment queue holds (256): all answered, none "busy".
    lines = [{"text": f"review number {i}: {'good ' * (i % 7)}fun"} for i in range(2000)]
    inputs = write_jsonl(tmp_path / "reviews.jsonl", lines)
    code, out, err = run(
        capsys, "sentiment", "--model", str(tiny_sentiment_dir), "--jsonl", str(inputs)
    )
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert len(results) == 2000
    assert all(r["label"] in SST2_LABELS for r in results)
    # In input order: each line's answer is the one that text gets alone.
    code, alone, _ = run(
        capsys, "sentiment", "--model", str(tiny_sentiment_dir), "--text", lines[1234]["text"]
    )
    assert code == 0
    label, score = alone.splitlines()[0].split("\t")
    assert results[1234]["label"] == label
    assert results[1234]["score"] == pytest.approx(float(score), abs=1e-4)


def test_jsonl_qa_over_hundreds_of_lines_reports_bad_lines_in_place(
    capsys: pytest.CaptureFixture[str], tiny_qa_dir: Path, tmp_path: Path
) -> None:
    context = "The meeting is on Tuesday in room four. Bob brings the slides."
    lines: list[dict] = [{"question": f"Question {i}?", "context": context} for i in range(300)]
    lines[17] = {"question": "Who?"}  # no context
    lines[250] = {"question": "Who?", "context": "   "}  # empty context
    inputs = write_jsonl(tmp_path / "qa.jsonl", lines)
    code, out, _ = run(capsys, "qa", "--model", str(tiny_qa_dir), "--jsonl", str(inputs))
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 300
    assert code == 1  # two lines failed; every other line is answered
    failed = [i for i, r in enumerate(results) if "error" in r]
    assert failed == [17, 250]
    assert results[17]["type"] == "InvalidInput" and "'context'" in results[17]["error"]
    assert "context is empty" in results[250]["error"]
    for result in results[:17] + results[18:250] + results[251:]:
        [answer] = result["answers"]
        assert context[answer["start"] : answer["end"]] == answer["text"]


def test_jsonl_generation_lines_and_conversations(
    capsys: pytest.CaptureFixture[str], tiny_chat_gpt2_dir: Path, tmp_path: Path
) -> None:
    # More lines than the generation queue holds (16 waiting, 2 generating).
    lines: list[dict] = [{"prompt": f"Story {i}:"} for i in range(40)]
    lines[5] = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Go on"},
        ]
    }
    lines[6] = {"messages": [{"role": "narrator", "content": "x"}]}
    inputs = write_jsonl(tmp_path / "prompts.jsonl", lines)
    code, out, _ = run(
        capsys,
        "generate",
        "--model",
        str(tiny_chat_gpt2_dir),
        "--max-new-tokens",
        "2",
        "--temperature",
        "0",
        "--jsonl",
        str(inputs),
    )
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 40 and code == 1
    assert results[6]["type"] == "InvalidInput" and "messages" in results[6]["error"]
    answered = [r for i, r in enumerate(results) if i != 6]
    assert all(1 <= r["new_tokens"] <= 2 for r in answered)
    # The conversation went through the chat template: three turns make a longer prompt.
    assert results[5]["prompt_tokens"] > results[4]["prompt_tokens"]


def test_jsonl_stops_at_a_line_that_is_not_json_after_answering_the_ones_before(
    capsys: pytest.CaptureFixture[str], tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "broken.jsonl"
    inputs.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{oops\n{"text": "never read"}\n')
    code, out, err = run(
        capsys, "sentiment", "--model", str(tiny_sentiment_dir), "--jsonl", str(inputs)
    )
    assert code == 2 and "broken.jsonl:4: not valid JSON" in err
    assert [json.loads(line)["label"] in SST2_LABELS for line in out.splitlines()] == [True, True]


def test_jsonl_model_that_cannot_load_is_said_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": f"t{i}"} for i in range(500)])
    code, out, err = run(
        capsys, "sentiment", "--model", "nobody/not-a-model", "--jsonl", str(inputs)
    )
    assert code == 1 and out == ""
    assert err.count("nobody/not-a-model") == 1 and "Traceback" not in err


class Recorded(io.StringIO):
    """An output stream noting how many input lines had been read at each line written."""

    def __init__(self, read: list[int]) -> None:
        super().__init__()
        self.read = read
        self.read_at_line: list[int] = []

    def write(self, text: str) -> int:
        if text == "\n":
            self.read_at_line.append(self.read[0])
        return super().write(text)


async def test_answer_lines_reads_lazily_and_bounds_what_is_in_flight() -> None:
    read = [0]
    in_flight = 0
    most = 0

    def lines() -> Iterator[dict]:
        for i in range(60):
            read[0] += 1
            yield {"n": i}

    async def answer(record: dict) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        # Later lines finish first: the output order must still be the input order.
        await asyncio.sleep(0.001 * (3 - record["n"] % 4))
        in_flight -= 1
        return record["n"]

    out = Recorded(read)
    failed = await answer_lines(lines(), answer, out, window=5)
    assert not failed
    assert [int(line) for line in out.getvalue().splitlines()] == list(range(60))
    assert most == 5
    # The first answer was written after reading one window, not the whole input.
    assert out.read_at_line[0] <= 5


async def test_a_full_queue_is_waited_out_not_reported(
    tiny_sentiment_dir: Path, tiny_models_root: Path
) -> None:
    # A registry whose queue holds 2 requests, fed 40 lines at once (as a shared registry
    # could be): every line is answered.
    spec = dataclasses.replace(
        default_spec(Task.SENTIMENT, str(tiny_sentiment_dir)), max_batch=1, queue_depth=2
    )
    registry = ModelRegistry([spec], allowed_roots=[tiny_models_root], torch_threads=1)
    args = build_parser().parse_args(["sentiment"])
    out = io.StringIO()
    try:
        lines = iter([{"text": f"line {i}"} for i in range(40)])
        failed = await answer_lines(lines, answerer(registry, Task.SENTIMENT, args), out, window=40)
    finally:
        await registry.close()
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert not failed and len(results) == 40
    assert all(r["label"] in SST2_LABELS for r in results)
