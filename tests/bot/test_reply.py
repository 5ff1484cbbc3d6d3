from __future__ import annotations

from typing import Any

import discord
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import reply
from bot.reply import MESSAGE_LIMIT, NO_MENTIONS, split_chunks, split_message
from tests.support.fakes import FakeChannel, FakeInteraction, FakeMessage

# ---------------------------------------------------------------- splitter

words = st.sampled_from(
    ["hello", "world.", "@everyone", "```", "```py", "x" * 300, "\n", "\n\n", " ", "é", "end!"]
)
texts = st.lists(st.one_of(words, st.text(max_size=40)), max_size=400).map(" ".join)


def _balanced(text: str) -> bool:
    return text.count("```") % 2 == 0


@settings(max_examples=300, deadline=None)
@given(texts)
def test_split_property(text: str) -> None:
    chunks = split_chunks(text)
    assert all(len(chunk.text) <= MESSAGE_LIMIT for chunk in chunks)
    # Nothing is lost or reordered: the original text is exactly the bodies joined.
    assert "".join(chunk.body for chunk in chunks) == text
    # Each message keeps code fences balanced when the whole text was balanced.
    if _balanced(text):
        assert all(_balanced(chunk.text) for chunk in chunks)
    assert split_message(text) == [chunk.text for chunk in chunks]


def test_short_text_is_one_message() -> None:
    assert split_message("hi there") == ["hi there"]
    assert split_message("") == []


def test_splits_at_line_ends() -> None:
    lines = [f"line {i:04d} " + "x" * 80 for i in range(60)]
    chunks = split_message("\n".join(lines))
    assert len(chunks) > 1
    for chunk in chunks[:-1]:
        assert chunk.endswith("\n")
    assert "".join(chunks) == "\n".join(lines)


def test_falls_back_to_sentences_then_spaces() -> None:
    text = "This is a sentence. " * 200
    chunks = split_message(text)
    assert all(chunk.endswith(". ") for chunk in chunks[:-1])
    nospace = "a" * 4500
    assert [len(c) for c in split_message(nospace)] == [1996, 1996, 508]


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(400))
    text = f"Here:\n```python\n{code}\n```\nDone."
    chunks = split_message(text)
    assert len(chunks) >= 2
    assert chunks[0].rstrip().endswith("```")
    assert chunks[1].startswith("```python\n")
    assert all(_balanced(c) for c in chunks)


# ---------------------------------------------------------------- send paths


def assert_no_mentions(calls: list[tuple[str, dict[str, Any]]]) -> None:
    sends = [
        (name, kw)
        for name, kw in calls
        if name not in {"response.defer", "delete_original_response"}
    ]
    assert sends, "nothing was sent"
    for name, kwargs in sends:
        assert kwargs.get("allowed_mentions") is NO_MENTIONS, name
        content = kwargs.get("content")
        assert content is None or len(content) <= MESSAGE_LIMIT


LONG = ("@everyone look at this <@&123> and <@456>. " * 120).strip()


async def test_send_uses_response_then_followups_without_mentions() -> None:
    inter = FakeInteraction()
    await reply.send(inter, LONG)  # type: ignore[arg-type]
    names = [name for name, _ in inter.rec.calls]
    assert names[0] == "response.send_message"
    assert set(names[1:]) == {"followup.send"}
    assert len(names) == len(split_message(LONG))
    assert_no_mentions(inter.rec.calls)


async def test_send_after_defer_uses_followups() -> None:
    inter = FakeInteraction()
    await reply.defer(inter)  # type: ignore[arg-type]
    await reply.send(inter, "@everyone hi")  # type: ignore[arg-type]
    assert [name for name, _ in inter.rec.calls] == ["response.defer", "followup.send"]
    assert_no_mentions(inter.rec.calls)


async def test_error_after_public_defer_stays_private() -> None:
    inter = FakeInteraction()
    await reply.defer(inter)  # type: ignore[arg-type]
    await reply.send_error(inter, "That didn't work.")  # type: ignore[arg-type]
    names = [name for name, _ in inter.rec.calls]
    assert names == ["response.defer", "delete_original_response", "followup.send"]
    assert inter.rec.calls[-1][1]["ephemeral"] is True
    assert_no_mentions(inter.rec.calls)


async def test_error_as_first_response_is_ephemeral() -> None:
    inter = FakeInteraction()
    await reply.send_error(inter, "No.")  # type: ignore[arg-type]
    assert inter.rec.calls == [
        (
            "response.send_message",
            {"allowed_mentions": NO_MENTIONS, "ephemeral": True, "content": "No."},
        )
    ]


async def test_edit_original_overflows_into_followups() -> None:
    inter = FakeInteraction(done=True)
    await reply.edit_original(inter, LONG)  # type: ignore[arg-type]
    names = [name for name, _ in inter.rec.calls]
    assert names[0] == "edit_original_response"
    assert names[1:] and set(names[1:]) == {"followup.send"}
    assert_no_mentions(inter.rec.calls)


async def test_channel_send_and_message_edit_have_no_mentions() -> None:
    channel = FakeChannel()
    message = await reply.send_to_channel(channel, LONG)  # type: ignore[arg-type]
    await reply.edit_message(message, LONG)  # type: ignore[arg-type]
    assert_no_mentions(channel.rec.calls)
    edited = channel.rec.calls[-1][1]["content"]
    assert edited.endswith(" …") and len(edited) <= MESSAGE_LIMIT


async def test_send_refuses_an_empty_message() -> None:
    with pytest.raises(ValueError):
        await reply.send(FakeInteraction(), "   ")  # type: ignore[arg-type]


async def test_a_channel_reply_grows_as_a_chain_of_replies_without_mentions() -> None:
    channel = FakeChannel()
    view = discord.ui.View()
    trigger = FakeMessage(channel.rec, 99)
    growing = reply.ChannelStreamingReply(
        channel,  # type: ignore[arg-type]
        reference=trigger,  # type: ignore[arg-type]
        chain=True,
        view=view,
        limit=1900,
    )
    await growing.render("first words")
    await growing.render("first words")  # unchanged: nothing sent
    await growing.render(LONG)
    await growing.render(LONG, final=True)
    calls = channel.rec.calls
    assert_no_mentions(calls)
    sends = [kwargs for name, kwargs in calls if name == "channel.send"]
    assert len(sends) == len(growing.messages) >= 2
    # The first part replies to the trigger, each later part to the part before it.
    parents = [99] + [m.id for m in growing.messages[:-1]]
    assert [s["reference"] for s in sends] == [("reference", p) for p in parents]
    # Stop sits on the newest part: the first while alone, then the last.
    assert ["view" in kwargs for kwargs in sends] == [True] + [False] * (len(sends) - 2) + [True]
    final_edits = [kwargs for name, kwargs in calls if name == "message.edit"][-1:]
    assert final_edits and final_edits[0]["view"] is None  # and goes once the reply is final
    unchained = reply.ChannelStreamingReply(FakeChannel(), limit=1900)  # type: ignore[arg-type]
    await unchained.render(LONG)
    sent = [kwargs for name, kwargs in unchained.channel.rec.calls if name == "channel.send"]  # type: ignore[attr-defined]
    assert all("reference" not in kwargs for kwargs in sent)
