"""The conversations service the chat cogs use: records, limits, and turning what was read from
Discord into the request a model can hold.

The bot owns one :class:`Conversations` (``bot.conversations``, built in ``bot.app``). A reply's
path: the cog reads an :class:`~bot.conversations.reading.Excerpt` (thread or DM history, or a
reply chain), :meth:`Conversations.prepare` adds the chat's starter and the channel's persona,
turns the messages into roles and fits them to the serving model's window
(:mod:`bot.conversations.fitting`), and the cog streams the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.conversations.fitting import fit, speaker_cut
from bot.conversations.limits import ChannelLocks, NoteThrottle, ServerSlots
from bot.conversations.reading import Excerpt
from bot.conversations.records import Conversation, ConversationRecords, EffectivePersona
from bot.conversations.turns import Said, to_turns
from bot.errors import UserFacingError
from bot.text import clip
from models.prompts import PromptCounter
from models.requests import GenerationParams, GenerationRequest

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class ChatLimits:
    """The settings conversations read (``Settings`` fields, so tests can build them alone)."""

    max_messages: int
    max_new_tokens: int
    temperature: float
    max_active_per_server: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatLimits:
        return cls(
            max_messages=settings.chat_max_messages,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.chat_temperature,
            max_active_per_server=settings.chat_max_active_per_server,
        )


@dataclass(frozen=True)
class Prepared:
    """A conversation ready to answer: the ``request``, a ``cut`` that ends a plain
    transcript's reply at the next speaker's line (None with a chat template), the persona
    used, and ``notes`` for the reply's footer (what was left out)."""

    request: GenerationRequest
    cut: Callable[[str], str | None] | None
    persona: EffectivePersona
    notes: tuple[str, ...]
    prompt_tokens: int


class Conversations:
    """Conversations' records and limits, and :meth:`prepare`."""

    def __init__(self, records: ConversationRecords, limits: ChatLimits) -> None:
        self.records = records
        self.limits = limits
        self.slots = ServerSlots(limits.max_active_per_server)
        self.locks = ChannelLocks()
        self.throttle = NoteThrottle()
        # No repetition penalty: over a conversation it would push the model away from the
        # very words it should remember (names, facts said earlier).
        self.params = GenerationParams(
            max_new_tokens=limits.max_new_tokens,
            temperature=limits.temperature,
            repetition_penalty=1.0,
        )

    async def prepare(
        self,
        excerpt: Excerpt,
        *,
        channel_id: int,
        parent_id: int | None,
        conversation: Conversation | None,
        counter: PromptCounter,
        bot_name: str,
    ) -> Prepared:
        """The request answering the excerpt's last message, in the persona of ``channel_id``
        (a thread inheriting from ``parent_id``); a chat's starter comes first when the excerpt
        reaches the start of its thread."""
        said = list(excerpt.said)
        if conversation is not None and excerpt.complete:
            # The first turn lives in the parent channel; its text is recorded as a prompt.
            said.insert(
                0,
                Said(
                    conversation.starter_message_id,
                    conversation.author_id,
                    conversation.author_name,
                    by_bot=True,
                    text="",
                ),
            )
        recorded = await self.records.recorded([s.id for s in said if s.by_bot])
        turns = to_turns(said, recorded)
        if not turns.turns or turns.turns[-1].role != "user":
            raise UserFacingError("There is nothing in that message for me to answer.")
        persona = await self.records.effective_persona(channel_id, parent_id)
        fitted = await fit(persona.text, turns.turns, counter, self.params, bot_name=bot_name)
        notes: list[str] = []
        if fitted.dropped:
            notes.append(f"{_count(fitted.dropped, 'earlier message')} left out to fit the model")
        if not excerpt.complete:
            notes.append(f"only the last {self.limits.max_messages} messages are read")
        if turns.hidden:
            notes.append(
                f"{_count(turns.hidden, 'message')} I can't read "
                "(no Message Content intent) left out"
            )
        if turns.unread:
            notes.append("not read: " + clip(", ".join(turns.unread), 200))
        cut = speaker_cut(turns.speakers, bot_name) if fitted.transcript else None
        return Prepared(fitted.request, cut, persona, tuple(notes), fitted.prompt_tokens)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
