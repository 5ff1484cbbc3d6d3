"""`python -m bot infer ask`: a folder's documents indexed and asked, as /ask does it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.infer_cli import main
from tests.support.documents import minimal_pdf

TOPICS = ("volcanoes", "glaciers", "deserts", "rainforests")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HFCORD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HFCORD_TORCH_THREADS", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "more").mkdir(parents=True)
    for topic in TOPICS[:2]:
        paragraphs = [
            f"Fact {i} about {topic}: {topic} matter. " + "Filler. " * 60 for i in range(4)
        ]
        (folder / f"{topic}.md").write_text("\n\n".join(paragraphs), encoding="utf-8")
    (folder / "more" / "deserts.pdf").write_bytes(minimal_pdf(["Deserts are dry.", "Sand."]))
    (folder / "rainforests.html").write_bytes(b"<p>Rainforests are wet.</p>")
    (folder / "skip.csv").write_text("not,a,document\n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("secret\n", encoding="utf-8")
    return folder


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ask", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _texts(folder: Path) -> dict[str, str]:
    from bot.documents.parsing import document_text

    return {
        path.relative_to(folder).as_posix(): document_text(path.read_bytes(), path.name)
        for path in folder.rglob("*")
        if path.suffix in {".md", ".pdf", ".html"} and not path.name.startswith(".")
    }


def test_answers_and_passages_point_into_the_documents(
    capsys: pytest.CaptureFixture[str],
    documents: Path,
    tiny_qa_dir: Path,
    tiny_embedding_dir: Path,
) -> None:
    code, out, err = ask(
        capsys,
        "--documents",
        str(documents),
        "--question",
        "Which fact is about glaciers?",
        "--model",
        str(tiny_qa_dir),
        "--embedding-model",
        str(tiny_embedding_dir),
        "--top-k",
        "3",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    texts = _texts(documents)
    assert set(texts) == {"volcanoes.md", "glaciers.md", "more/deserts.pdf", "rainforests.html"}
    assert len(result["passages"]) == 3
    for passage in result["passages"]:
        assert passage["score"] is not None and passage["end"] > passage["start"]
        assert passage["document"] in texts
    scores = [p["score"] for p in result["passages"]]
    assert scores == sorted(scores, reverse=True)
    assert 1 <= len(result["answers"]) <= 3
    for answer in result["answers"]:
        body = texts[answer["document"]]
        assert body[answer["start"] : answer["end"]] == answer["text"]


def test_jsonl_and_a_short_folder_read_whole(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_qa_dir: Path,
    tiny_embedding_dir: Path,
) -> None:
    folder = tmp_path / "short"
    folder.mkdir()
    (folder / "a.txt").write_text("The tower is in Paris.", encoding="utf-8")
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "Where?"}\n{"nope": 1}\n', encoding="utf-8")
    code, out, _ = ask(
        capsys,
        "--documents",
        str(folder),
        "--jsonl",
        str(questions),
        "--model",
        str(tiny_qa_dir),
        "--embedding-model",
        str(tiny_embedding_dir),
    )
    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 1  # the second line has no question
    assert first["passages"] == [{"document": "a.txt", "start": 0, "end": 22, "score": None}]
    assert "question" in second["error"]


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert ask(capsys, "--question", "x")[0] == 2
    code, _, err = ask(capsys, "--documents", str(tmp_path / "missing"), "--question", "x")
    assert code == 2 and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = ask(capsys, "--documents", str(tmp_path / "empty"), "--question", "x")
    assert code == 2 and "has no documents" in err
