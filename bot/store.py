"""The bot's SQLite store: one aiosqlite connection, WAL, numbered migrations."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    created_at: str
    guild_id: int | None
    user_id: int
    action: str
    detail: str


def load_migrations(package: str = "bot.migrations") -> list[Migration]:
    """Every `NNNN_name.sql` in the migrations package, in order; numbers must be 1..N."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"migration numbers must run 1..N without gaps; {migration.name} is not {expected:04d}"
            )
    return found


# Every connection to the bot's database: wait for another connection's write lock (e.g. another
# process's migrations) instead of failing — set before the WAL switch, which may need it —, WAL
# so readers never block the writer, foreign keys enforced.
_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


async def configure(conn: aiosqlite.Connection) -> None:
    """Apply the pragmas every connection to the bot's database uses."""
    for pragma in _PRAGMAS:
        await conn.execute(pragma)


@asynccontextmanager
async def write_transaction(
    conn: aiosqlite.Connection, lock: asyncio.Lock
) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn`` (one writer at a time through ``lock``),
    rolled back on any exception."""
    async with lock:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        else:
            await conn.execute("COMMIT")


class Store:
    """Owns the single database connection; domain repositories take a Store."""

    def __init__(self, conn: aiosqlite.Connection, path: Path | str) -> None:
        self.conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, migrations: list[Migration] | None = None) -> Store:
        """Open (creating the file and its folder) and bring the schema up to date."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        store = cls(conn, path)
        try:
            await configure(conn)
            await store.migrate(load_migrations() if migrations is None else migrations)
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        await self.conn.close()

    async def schema_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self, migrations: list[Migration]) -> int:
        """Apply pending migrations in one transaction; returns how many ran.

        Safe when several processes open a fresh data folder at once: the version is read
        again inside the write transaction (``BEGIN IMMEDIATE`` holds the database's write
        lock), so migrations another process applied meanwhile are not applied twice.
        """
        if not _pending(migrations, await self.schema_version()):
            return 0  # up to date: no write lock needed
        async with self.transaction():
            pending = _pending(migrations, await self.schema_version())
            for migration in pending:
                log.info("applying migration %s", migration.name)
                for statement in _statements(migration.sql):
                    await self.conn.execute(statement)
            if pending:
                # PRAGMA takes no parameters; the version is an int we produced.
                await self.conn.execute(f"PRAGMA user_version = {pending[-1].version:d}")
        return len(pending)

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        return write_transaction(self.conn, self._write_lock)

    async def audit(
        self, *, guild_id: int | None, user_id: int, action: str, detail: str = ""
    ) -> None:
        """Record an admin action."""
        query = """
            INSERT INTO audit_log (guild_id, user_id, action, detail)
            VALUES (?, ?, ?, ?)
        """
        async with self.transaction() as conn:
            await conn.execute(query, (guild_id, user_id, action, detail))

    async def recent_audit(self, guild_id: int | None, limit: int = 20) -> list[AuditEntry]:
        query = """
            SELECT id, created_at, guild_id, user_id, action, detail
            FROM audit_log WHERE guild_id IS ? ORDER BY id DESC LIMIT ?
        """
        async with self.conn.execute(query, (guild_id, limit)) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(**dict(row)) for row in rows]


def _pending(migrations: list[Migration], current: int) -> list[Migration]:
    return [m for m in migrations if m.version > current]


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (migrations hold no semicolons inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
