"""What conversations keep in SQLite: personas per channel, chats opened with /chat, and the
bot's messages that are not its own words (the echo of a /chat prompt, notes).

A thread without a persona of its own uses its parent channel's; without either, the bot's
default (``HFCORD_SYSTEM_PROMPT``). Setting and clearing personas is written to the audit log.
Everything else a conversation holds is read back from Discord's messages.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.store import Store

MessageKind = Literal["prompt", "note"]
PersonaSource = Literal["own", "parent", "default"]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True, slots=True)
class Persona:
    """A channel's (or thread's) own persona."""

    channel_id: int
    guild_id: int | None
    text: str
    set_by: int
    set_at: datetime


@dataclass(frozen=True, slots=True)
class EffectivePersona:
    """The persona a channel's conversations use, and where it comes from: the channel's
    ``own``, its ``parent`` channel's (a thread inheriting) or the bot's ``default``."""

    text: str
    source: PersonaSource
    persona: Persona | None  # None for the default


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat thread opened by /chat."""

    thread_id: int
    guild_id: int
    parent_id: int
    starter_message_id: int
    author_id: int
    author_name: str
    starter: str  # the first turn: what /chat was asked, shown in the parent channel
    model: str | None  # the model that last answered (users see this name)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """A bot message that is not the bot's words: a person's ``prompt`` (its text and author
    kept here) or a ``note`` (left out of conversations)."""

    message_id: int
    channel_id: int
    kind: MessageKind
    author_id: int | None
    author_name: str | None
    content: str | None


def _persona(row: object) -> Persona:
    data = dict(row)  # type: ignore[call-overload]
    data["set_at"] = datetime.fromisoformat(data["set_at"])
    return Persona(**data)


def _conversation(row: object) -> Conversation:
    data = dict(row)  # type: ignore[call-overload]
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["updated_at"] = datetime.fromisoformat(data["updated_at"])
    return Conversation(**data)


class ConversationRecords:
    """The conversations' tables (migration 0004), behind methods that say what they mean."""

    def __init__(self, store: Store, *, default_persona: str) -> None:
        self._store = store
        self.default_persona = default_persona

    # -- personas ------------------------------------------------------------------------

    async def persona(self, channel_id: int) -> Persona | None:
        query = """
            SELECT channel_id, guild_id, text, set_by, set_at
            FROM chat_personas WHERE channel_id = ?
        """
        async with self._store.conn.execute(query, (channel_id,)) as cursor:
            row = await cursor.fetchone()
        return _persona(row) if row is not None else None

    async def effective_persona(
        self, channel_id: int, parent_id: int | None = None
    ) -> EffectivePersona:
        """The channel's persona, else (a thread) its parent channel's, else the default."""
        own = await self.persona(channel_id)
        if own is not None:
            return EffectivePersona(own.text, "own", own)
        if parent_id is not None:
            inherited = await self.persona(parent_id)
            if inherited is not None:
                return EffectivePersona(inherited.text, "parent", inherited)
        return EffectivePersona(self.default_persona, "default", None)

    async def set_persona(
        self, *, channel_id: int, guild_id: int | None, text: str, user_id: int
    ) -> Persona:
        """Give the channel its own persona (replacing any) and audit it."""
        async with self._store.transaction() as conn:
            await conn.execute(_UPSERT_PERSONA, (channel_id, guild_id, text, user_id, _now()))
        await self._store.audit(
            guild_id=guild_id,
            user_id=user_id,
            action="persona.set",
            detail=f"channel {channel_id}, {len(text)} characters",
        )
        persona = await self.persona(channel_id)
        assert persona is not None
        return persona

    async def clear_persona(
        self, *, channel_id: int, guild_id: int | None, user_id: int
    ) -> Persona | None:
        """Remove the channel's own persona (audited); the one removed, or None."""
        persona = await self.persona(channel_id)
        if persona is None:
            return None
        async with self._store.transaction() as conn:
            await conn.execute("DELETE FROM chat_personas WHERE channel_id = ?", (channel_id,))
        await self._store.audit(
            guild_id=guild_id,
            user_id=user_id,
            action="persona.clear",
            detail=f"channel {channel_id}, set by {persona.set_by}",
        )
        return persona

    # -- chat threads --------------------------------------------------------------------

    async def conversation(self, thread_id: int) -> Conversation | None:
        query = """
            SELECT thread_id, guild_id, parent_id, starter_message_id, author_id, author_name,
                   starter, model, created_at, updated_at
            FROM chat_conversations WHERE thread_id = ?
        """
        async with self._store.conn.execute(query, (thread_id,)) as cursor:
            row = await cursor.fetchone()
        return _conversation(row) if row is not None else None

    async def start(
        self,
        *,
        thread_id: int,
        guild_id: int,
        parent_id: int,
        starter_message_id: int,
        author_id: int,
        author_name: str,
        starter: str,
        persona: str | None = None,
    ) -> Conversation:
        """Record a chat thread, its starter (also as the prompt of its starter message) and,
        when ``/chat persona:`` gave one, the thread's own persona, in one transaction."""
        now = _now()
        async with self._store.transaction() as conn:
            await conn.execute(
                """
                INSERT INTO chat_conversations (thread_id, guild_id, parent_id,
                    starter_message_id, author_id, author_name, starter, model, created_at,
                    updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
                """,
                (
                    thread_id,
                    guild_id,
                    parent_id,
                    starter_message_id,
                    author_id,
                    author_name,
                    starter,
                    now,
                    now,
                ),
            )
            await conn.execute(
                _INSERT_MESSAGE,
                (starter_message_id, parent_id, "prompt", author_id, author_name, starter, now),
            )
            if persona is not None:
                await conn.execute(_UPSERT_PERSONA, (thread_id, guild_id, persona, author_id, now))
        conversation = await self.conversation(thread_id)
        assert conversation is not None
        return conversation

    async def answered_by(self, thread_id: int, model: str) -> str | None:
        """Note the model that just answered in a chat thread; the one before it (None when
        it is the first answer or the same model)."""
        async with self._store.transaction() as conn:
            async with conn.execute(
                "SELECT model FROM chat_conversations WHERE thread_id = ?", (thread_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            await conn.execute(
                "UPDATE chat_conversations SET model = ?, updated_at = ? WHERE thread_id = ?",
                (model, _now(), thread_id),
            )
        previous = row[0]
        return previous if previous is not None and previous != model else None

    # -- the bot's messages that are not its words --------------------------------------------

    async def record_prompt(
        self, *, message_id: int, channel_id: int, author_id: int, author_name: str, content: str
    ) -> None:
        """The bot's ``message_id`` shows a person's turn (a /chat prompt)."""
        async with self._store.transaction() as conn:
            await conn.execute(
                _INSERT_MESSAGE,
                (message_id, channel_id, "prompt", author_id, author_name, content, _now()),
            )

    async def record_notes(self, *, message_ids: Collection[int], channel_id: int) -> None:
        """The bot's ``message_ids`` are notes (refusals, errors), not conversation."""
        now = _now()
        async with self._store.transaction() as conn:
            await conn.executemany(
                _INSERT_MESSAGE,
                [(m, channel_id, "note", None, None, None, now) for m in message_ids],
            )

    async def recorded(self, message_ids: Collection[int]) -> dict[int, RecordedMessage]:
        """The recorded ones among ``message_ids``."""
        ids = list(dict.fromkeys(message_ids))
        found: dict[int, RecordedMessage] = {}
        for start in range(0, len(ids), 500):  # below SQLite's bound on parameters
            chunk = ids[start : start + 500]
            query = f"""
                SELECT message_id, channel_id, kind, author_id, author_name, content
                FROM chat_messages WHERE message_id IN ({", ".join("?" * len(chunk))})
            """
            async with self._store.conn.execute(query, chunk) as cursor:
                for row in await cursor.fetchall():
                    found[row["message_id"]] = RecordedMessage(**dict(row))
        return found


_UPSERT_PERSONA = """
    INSERT INTO chat_personas (channel_id, guild_id, text, set_by, set_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (channel_id) DO UPDATE SET
        guild_id = excluded.guild_id, text = excluded.text, set_by = excluded.set_by,
        set_at = excluded.set_at
"""
_INSERT_MESSAGE = """
    INSERT OR REPLACE INTO chat_messages
        (message_id, channel_id, kind, author_id, author_name, content, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
