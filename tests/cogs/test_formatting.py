from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.documents.index import DocumentInfo
from bot.documents.reading import Found, quote_of
from bot.reply import MESSAGE_LIMIT, NO_MENTIONS, StreamingReply
from cogs.models import format_statuses
from cogs.ner import format_entities, mark_entities
from cogs.qa import describe, document_name, format_answer
from cogs.sentiment import format_sentiment
from models.results import ClassificationResult, Entity, LabelScore, ModelStatus, NERResult
from models.tasks import Task
from tests.support.fakes import FakeInteraction


def test_entities_are_marked_inline_and_listed() -> None:
    text = "Ada Lovelace met *Babbage* in London."
    entities = (
        Entity("Ada Lovelace", "PER", 0.99, 0, 12),
        Entity("Babbage", "PER", 0.9, 18, 25),
        Entity("London", "LOC", 0.97, 30, 36),
    )
    marked = mark_entities(text, entities)
    assert marked == r"**Ada Lovelace** `PER` met \***Babbage** `PER`\* in **London** `LOC`."
    out = format_entities(text, NERResult(entities, "m"))
    assert "• London: location (97.0%)" in out
    assert "no named entities" in format_entities(text, NERResult((), "m"))


def test_answer_quotes_its_sentence_with_the_answer_in_bold_and_names_its_document() -> None:
    body = "The tower opened in 1889. It is in Paris, France. Nobody knows more."
    start = body.index("Paris")
    found = Found("Paris", 0.87, "guide.pdf", start, start + 5, quote_of(body, start, start + 5))
    out = format_answer("Where is it?", found)
    assert out.splitlines() == [
        "**Q:** Where is it?",
        "**A:** Paris (87% confident)",
        "> It is in **Paris**, France.",
        "-# from `guide.pdf`",
    ]


def test_a_document_line_says_who_added_it_when_and_how_long_it_is() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    info = DocumentInfo(1, 2, 3, "notes", 1234, "file a_b.md", 5, now, 6, later, 0)
    line = describe(info, inherited=True)
    assert line.startswith("`notes` · added by <@5> <t:1767225600:R> from file a\\_b.md")
    assert "last added to by <@6>" in line and "1,234 characters" in line
    assert line.endswith("inherited from the parent channel")


def test_document_names_lose_folders_markdown_and_mentions() -> None:
    assert document_name("../../etc/passwd") == "passwd"
    assert document_name("C:\\Users\\me\\My `cool`  *notes*.md") == "My cool notes .md"
    assert document_name("@everyone <@123>.txt") == "everyone 123 .txt"
    assert document_name("```") == "document"
    assert len(document_name("x" * 300 + ".pdf")) == 100


def _status(
    task: str, model: str, guild: int | None, state: str = "ready", reason: str | None = None
) -> ModelStatus:
    return ModelStatus(task, model, "hub", state, reason, guild, "cpu")  # type: ignore[arg-type]


def test_models_shows_this_servers_override_only() -> None:
    statuses = [
        _status("sentiment", "base-model", None),
        _status("ner", "ner-model", None, "failed", "not in the local cache"),
        _status("sentiment", "job-7-model", 111),
        _status("sentiment", "other-server-model", 222),
    ]
    out = format_statuses(statuses, 111)
    assert "`job-7-model`" in out and "promoted in this server" in out
    assert "other-server-model" not in out
    assert "🔴 failed: not in the local cache" in out
    assert "job-7-model" not in format_statuses(statuses, 222)


def test_models_names_models_never_paths_and_notes_a_fallback() -> None:
    default = ModelStatus(
        Task.SENTIMENT, "/srv/models/sst2", "local", "ready", None, None, "cpu", name="sst2"
    )
    broken = ModelStatus(
        Task.SENTIMENT,
        "/srv/data/models/77",
        "local",
        "failed",
        "The folder of the model fine-tuned job #77 is missing.",
        111,
        "cpu",
        name="fine-tuned job #77",
    )
    here = format_statuses([default, broken], 111)
    assert "/srv" not in here
    assert "`fine-tuned job #77` · local · promoted in this server · 🔴 failed" in here
    assert "answered by the default model, `sst2`" in here
    elsewhere = format_statuses([default, broken], 222).splitlines()
    assert elsewhere[1:] == ["**sentiment**: `sst2` · local · 🟢 ready"]


def test_hostile_label_names_are_shown_as_typed() -> None:
    phish = "[free nitro](https://evil.example)"
    result = ClassificationResult(
        phish, 0.9, (LabelScore(phish, 0.9), LabelScore("**x**", 0.1)), "m"
    )
    out = format_sentiment("> quoted [link](https://x.example)", result)
    assert out.splitlines() == [
        r"🏷️ **\[free nitro\](https://evil.example)** (90.0% confident) · \*\*x\*\* 10.0%",
        r"> \> quoted \[link\](https://x.example)",
    ]
    entities = (Entity("Ada", phish, 0.5, 0, 3), Entity("Bob", "`X`", 0.5, 8, 11))
    out = format_entities("Ada met Bob", NERResult(entities, "m"))
    assert out.splitlines()[0] == f"**Ada** `{phish}` met **Bob** `\u02cbX\u02cb`"
    assert r"• Ada: \[free nitro\](https://evil.example) (50.0%)" in out


class RecordingMessage:
    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.calls = calls

    async def edit(self, **kwargs: Any) -> None:
        self.calls.append(("message.edit", kwargs))


async def test_streaming_reply_overflows_and_moves_the_view() -> None:
    inter: Any = FakeInteraction(done=True)
    calls = inter.rec.calls

    async def followup_send(content: str | None = None, **kwargs: Any) -> RecordingMessage:
        calls.append(("followup.send", {"content": content, **kwargs}))
        return RecordingMessage(calls)

    inter.followup.send = followup_send
    view: Any = object()
    stream = StreamingReply(inter, view=view, limit=1900)
    await stream.render("start")
    await stream.render("start")  # nothing changed: no request
    assert [name for name, _ in calls] == ["edit_original_response"]
    long = "word " * 500  # 2,500 characters: two messages
    await stream.render(long)
    assert [name for name, _ in calls][1:] == ["edit_original_response", "followup.send"]
    assert calls[1][1]["view"] is None and calls[2][1]["view"] is view
    await stream.render(long, final=True)
    assert calls[-1][0] == "message.edit" and calls[-1][1]["view"] is None
    for _, kwargs in calls:
        assert kwargs["allowed_mentions"] is NO_MENTIONS
        assert len(kwargs["content"]) <= MESSAGE_LIMIT


def test_models_shows_an_engines_backend_host_and_health() -> None:
    from models.engines import EngineHealth

    def on_engine(health: EngineHealth) -> str:
        status = ModelStatus(
            Task.GENERATION,
            "meta-llama/Llama-3.1-8B-Instruct",
            "engine",
            "ready",
            None,
            None,
            "cpu",
            name="meta-llama/Llama-3.1-8B-Instruct",
            backend="openai",
            health=health,
        )
        (_, line) = format_statuses([status], None).splitlines()
        return line

    head = "**generation**: `meta-llama/Llama-3.1-8B-Instruct` · openai at `10.0.0.5:8000` · "
    assert (
        on_engine(EngineHealth("openai", "10.0.0.5:8000", "unknown")) == head + "⚪ not asked yet"
    )
    answering = EngineHealth("openai", "10.0.0.5:8000", "answering", first_token_ms=84.4)
    assert on_engine(answering) == head + "🟢 answering (84 ms)"
    sentence = "The generation service at 10.0.0.5:8000 is failing (HTTP 503); try again in 10 s."
    failing = EngineHealth("openai", "10.0.0.5:8000", "failing", detail=sentence)
    assert on_engine(failing) == head + "🔴 failing: " + sentence
    paused = EngineHealth("openai", "10.0.0.5:8000", "paused", detail=sentence, retry_in_s=6.2)
    assert on_engine(paused) == (
        head + "🟠 paused after repeated failures, tries again in 7 s: " + sentence
    )
