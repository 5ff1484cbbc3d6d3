"""The reader over sources: answers placed in their documents, best first, quoted; a whole
document read alone is exactly the registry's answer over it."""

from __future__ import annotations

from pathlib import Path

from bot.documents.reading import Quote, Source, quote_of, read
from models.registry import ModelRegistry
from models.results import Answer, QAResult
from models.specs import Task, default_spec


class ScriptedReader:
    """Answers with the first occurrence of a word of each context, at a given score."""

    def __init__(self, answers: dict[str, tuple[str, float]]) -> None:
        self.answers = answers
        self.contexts: list[str] = []

    async def answer(
        self, question: str, context: str, guild_id: int | None = None, top_k: int = 1
    ) -> QAResult:
        self.contexts.append(context)
        for key, (word, score) in self.answers.items():
            if key in context:
                start = context.index(word)
                return QAResult((Answer(word, score, start, start + len(word)),), "m")
        return QAResult((), "m")


async def test_answers_point_into_their_documents_best_first() -> None:
    reader = ScriptedReader({"Paris": ("Paris", 0.4), "Rome": ("Rome", 0.9), "tie": ("tie", 0.4)})
    sources = [
        Source("a.txt", 100, "It is in Paris. More.", 0.8),
        Source("b.txt", 0, "Nothing to see.", 0.7),
        Source("c.txt", 5, "Rome, of course.", 0.6),
        Source("d.txt", 0, "A tie here.", 0.5),
    ]
    found = (await read(reader, "Where?", sources)).answers
    assert [(f.document, f.text, f.start, f.end) for f in found] == [
        ("c.txt", "Rome", 5, 9),
        ("a.txt", "Paris", 109, 114),  # equal scores keep retrieval order
        ("d.txt", "tie", 2, 5),
    ]
    assert found[1].quote == Quote("It is in Paris.", 9, 14)
    assert len(reader.contexts) == 4


def test_the_quote_is_the_sentence_with_the_answer_placed() -> None:
    text = "The tower opened in 1889. It is in Paris, France. Nobody knows more."
    start = text.index("Paris")
    assert quote_of(text, start, start + 5) == Quote("It is in Paris, France.", 9, 14)
    long = "word " * 200 + "needle " + "word " * 200
    quote = quote_of(long, long.index("needle"), long.index("needle") + 6)
    assert quote.sentence.startswith("…") and quote.answer_start is None


async def test_one_whole_document_is_the_registrys_answer(tiny_qa_dir: Path) -> None:
    registry = ModelRegistry([default_spec(Task.QA, str(tiny_qa_dir))], torch_threads=1)
    try:
        body = "The Eiffel Tower is in Paris. It was finished in 1889 for the World's Fair."
        question = "When was the tower finished?"
        expected = (await registry.answer(question, body)).best
        [found] = (await read(registry, question, [Source("notes", 0, body)])).answers
        assert expected is not None
        assert (found.text, found.score, found.start, found.end) == (
            expected.text,
            expected.score,
            expected.start,
            expected.end,
        )
    finally:
        await registry.close()
