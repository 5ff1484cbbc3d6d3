"""Per-server slots, one answer at a time per channel, notes at most so often."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversations.limits import ChannelLocks, NoteThrottle, ServerBusy, ServerSlots


def test_a_server_has_at_most_its_slots_and_dms_are_not_counted() -> None:
    slots = ServerSlots(2)
    with slots.take(1), slots.take(1):
        assert slots.active(1) == 2
        with pytest.raises(ServerBusy, match="already has 2 conversations"):
            with slots.take(1):
                pass
        with slots.take(2), slots.take(None), slots.take(None):
            assert slots.active(2) == 1 and slots.active(None) == 0
    assert slots.active(1) == 0
    with pytest.raises(ValueError):
        ServerSlots(0)


async def test_answers_in_one_channel_wait_their_turn_and_locks_are_forgotten() -> None:
    locks = ChannelLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def answer(name: str, channel: int, wait: bool) -> None:
        async with locks.hold(channel):
            order.append(f"{name} starts")
            if wait:
                await release.wait()
            order.append(f"{name} ends")

    first = asyncio.create_task(answer("first", 1, True))
    await asyncio.sleep(0)
    second = asyncio.create_task(answer("second", 1, False))
    other = asyncio.create_task(answer("other", 2, False))
    await other
    assert order == ["first starts", "other starts", "other ends"]
    release.set()
    await asyncio.gather(first, second)
    assert order[3:] == ["first ends", "second starts", "second ends"]
    assert len(locks) == 0


def test_one_note_per_person_per_interval() -> None:
    now = [0.0]
    throttle = NoteThrottle(30.0, clock=lambda: now[0])
    assert throttle.allow(1) and not throttle.allow(1) and throttle.allow(2)
    now[0] = 29.0
    assert not throttle.allow(1)
    now[0] = 30.5
    assert throttle.allow(1)
