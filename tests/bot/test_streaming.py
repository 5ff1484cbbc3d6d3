"""stream_into: renders as the text grows, ends early when cut, and cleans up on failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.streaming import Streamed, stream_into
from models.results import GenerationStats
from models.streams import GenerationStream


class Reply:
    def __init__(self) -> None:
        self.rendered: list[str] = []
        self.renders: list[tuple[str, bool]] = []

    async def render(self, text: str, *, final: bool = False) -> None:
        self.renders.append((text, final))
        self.rendered = [text]


def stream_of(pieces: list[str], *, fail_after: int | None = None) -> GenerationStream:
    async def source(stream: GenerationStream) -> AsyncIterator[str]:
        for index, piece in enumerate(pieces):
            if fail_after is not None and index == fail_after:
                raise RuntimeError("the model broke")
            yield piece
        stream.stats = GenerationStats(
            text="".join(pieces),
            prompt_tokens=3,
            new_tokens=len(pieces),
            seconds=0.1,
            finish_reason="cancelled",
            model_id="m",
            model_name="m",
        )

    return GenerationStream(source)


def final(streamed: Streamed) -> str:
    return f"{streamed.text}|{streamed.stats.new_tokens}|{streamed.cut}"


async def test_a_cut_keeps_the_text_before_the_next_speaker_and_stops_generation() -> None:
    reply, cancel = Reply(), asyncio.Event()
    streamed = await stream_into(
        reply,
        stream_of([" Fine", " thanks.", "\nAda:", " and", " you?"]),
        first="…",
        partial=lambda text: text,
        final=final,
        failed=lambda text: f"failed: {text}",
        cut=lambda text: text.split("\nAda:")[0] if "\nAda:" in text else None,
        cancel=cancel,
        interval=0.0,
    )
    assert cancel.is_set() and streamed.cut and streamed.text == " Fine thanks."
    assert reply.renders[0] == ("…", False)
    assert reply.renders[-1] == (" Fine thanks.|5|True", True)
    assert all("Ada" not in text for text, _ in reply.renders)


async def test_a_failure_after_a_render_leaves_what_was_written_and_goes_on() -> None:
    reply = Reply()
    with pytest.raises(RuntimeError, match="the model broke"):
        await stream_into(
            reply,
            stream_of([" Once", " upon", " a"], fail_after=2),
            first="…",
            partial=lambda text: text,
            final=final,
            failed=lambda text: f"failed: {text}",
            interval=0.0,
        )
    assert reply.renders[-1] == ("failed:  Once upon", True)
