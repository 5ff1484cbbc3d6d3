"""Per-channel question-answering contexts, stored in SQLite: the service `/context` and `/ask` use.

A thread may have a context of its own; without one it reads its parent channel's. Who may
replace or clear a context is decided here (its author, or members who may manage messages),
inside the same transaction that writes, and clearing is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.errors import UserFacingError
from bot.store import Store


class ContextTooLong(UserFacingError):
    """The context would exceed the configured size."""


@dataclass(frozen=True, slots=True)
class QAContext:
    channel_id: int
    guild_id: int | None
    body: str
    source: str  # "text" or "file <name>"
    author_id: int  # who set it (may clear it)
    created_at: datetime
    updated_by: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Appended:
    context: QAContext
    copied_parent: bool  # a thread's own context was started from its parent channel's


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _row(row: object) -> QAContext:
    data = dict(row)  # type: ignore[call-overload]
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["updated_at"] = datetime.fromisoformat(data["updated_at"])
    return QAContext(**data)


class ContextStore:
    """Contexts keyed by channel (threads included), with the thread fallback and the rules."""

    def __init__(self, store: Store, *, max_chars: int) -> None:
        self._store = store
        self.max_chars = max_chars

    def _check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise ContextTooLong(
                f"That would make this channel's context {size:,} characters long; "
                f"the limit is {self.max_chars:,}. Shorten it, or clear it and start again."
            )

    async def get(self, channel_id: int) -> QAContext | None:
        query = """
            SELECT channel_id, guild_id, body, source, author_id, created_at, updated_by, updated_at
            FROM qa_contexts WHERE channel_id = ?
        """
        async with self._store.conn.execute(query, (channel_id,)) as cursor:
            row = await cursor.fetchone()
        return _row(row) if row is not None else None

    async def effective(
        self, channel_id: int, parent_id: int | None = None
    ) -> tuple[QAContext | None, bool]:
        """The channel's own context, else (for a thread) its parent's; and whether inherited."""
        context = await self.get(channel_id)
        if context is not None or parent_id is None:
            return context, False
        inherited = await self.get(parent_id)
        return inherited, inherited is not None

    async def set(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        body: str,
        source: str,
        author_id: int,
        may_manage: bool = False,
    ) -> QAContext:
        """Replace the channel's context; the setter becomes its author.

        Replacing a context someone else set needs ``may_manage`` (Manage Messages).
        """
        body = body.strip()
        if not body:
            raise UserFacingError("The context is empty; give some text to answer questions from.")
        self._check_size(len(body))
        now = _now().isoformat()
        query = """
            INSERT INTO qa_contexts
                (channel_id, guild_id, body, source, author_id, created_at, updated_by, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (channel_id) DO UPDATE SET
                guild_id = excluded.guild_id, body = excluded.body, source = excluded.source,
                author_id = excluded.author_id, created_at = excluded.created_at,
                updated_by = excluded.updated_by, updated_at = excluded.updated_at
        """
        async with self._store.transaction() as conn:
            async with conn.execute(
                "SELECT author_id FROM qa_contexts WHERE channel_id = ?", (channel_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None and row[0] != author_id and not may_manage:
                raise UserFacingError(
                    f"This channel's context was set by <@{row[0]}>; only they or members with "
                    "the Manage Messages permission can replace it. Add to it with "
                    "`/context append` instead."
                )
            await conn.execute(
                query, (channel_id, guild_id, body, source, author_id, now, author_id, now)
            )
        context = await self.get(channel_id)
        assert context is not None
        return context

    async def append(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        body: str,
        source: str,
        author_id: int,
        parent_id: int | None = None,
    ) -> Appended:
        """Add text at the end (a new paragraph); starts a context when there is none.

        In a thread (``parent_id`` set) that only inherits its parent channel's context, the
        thread's own context starts as a copy of the parent's, so appending never hides it.
        """
        body = body.strip()
        if not body:
            raise UserFacingError("There is nothing to add; give some text.")
        copied_parent = False
        async with self._store.transaction() as conn:
            query = "SELECT body FROM qa_contexts WHERE channel_id = ?"
            async with conn.execute(query, (channel_id,)) as cursor:
                row = await cursor.fetchone()
            if row is None and parent_id is not None:
                async with conn.execute(query, (parent_id,)) as cursor:
                    parent = await cursor.fetchone()
                if parent is not None:
                    body = f"{parent[0]}\n\n{body}"
                    copied_parent = True
            now = _now().isoformat()
            if row is None:
                self._check_size(len(body))
                query = """
                    INSERT INTO qa_contexts (channel_id, guild_id, body, source, author_id,
                                             created_at, updated_by, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
                await conn.execute(
                    query, (channel_id, guild_id, body, source, author_id, now, author_id, now)
                )
            else:
                combined = f"{row[0]}\n\n{body}"
                self._check_size(len(combined))
                query = """
                    UPDATE qa_contexts SET body = ?, updated_by = ?, updated_at = ?
                    WHERE channel_id = ?
                """
                await conn.execute(query, (combined, author_id, now, channel_id))
        context = await self.get(channel_id)
        assert context is not None
        return Appended(context, copied_parent)

    async def clear(self, channel_id: int, *, user_id: int, may_manage: bool) -> QAContext:
        """Remove the channel's own context and audit it.

        Allowed for the context's author, or anyone who may manage messages in the channel.
        """
        context = await self.get(channel_id)
        if context is None:
            raise UserFacingError("This channel has no context of its own to clear.")
        if user_id != context.author_id and not may_manage:
            raise UserFacingError(
                f"Only <@{context.author_id}>, who set this context, or members with the "
                "Manage Messages permission can clear it."
            )
        async with self._store.transaction() as conn:
            await conn.execute("DELETE FROM qa_contexts WHERE channel_id = ?", (channel_id,))
        await self._store.audit(
            guild_id=context.guild_id,
            user_id=user_id,
            action="context.clear",
            detail=f"channel {channel_id}, set by {context.author_id}",
        )
        return context
