"""The documents index's own connection to the bot's SQLite file, able to load sqlite-vec.

Python's bundled sqlite3 is often built without extension loading (it is on this project's
machines), so the index connects through ``sqlean.py``, a drop-in ``sqlite3`` module with a
current SQLite that may load extensions, and loads ``sqlite-vec`` into it. It is a second
connection to the same WAL database as :class:`bot.store.Store` (which applies the schema
migrations): documents, passages and vectors are only ever written through this one, in short
transactions, so the store's writes wait at most one of them (``busy_timeout``).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store import configure, write_transaction


def connect_with_vectors(path: Path | str) -> Any:
    """A blocking DB-API connection with sqlite-vec loaded (autocommit: explicit BEGIN)."""
    import sqlean
    import sqlite_vec

    conn = sqlean.connect(str(path), isolation_level=None)
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
    except BaseException:
        conn.close()
        raise
    return conn


class IndexConnection:
    """One aiosqlite connection (its own thread) with sqlite-vec, and a write lock."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> IndexConnection:
        """Connect to the database at ``path`` (the store has created its schema)."""
        conn = aiosqlite.Connection(lambda: connect_with_vectors(path), iter_chunk_size=256)
        await conn
        try:
            await configure(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        return write_transaction(self.conn, self._write_lock)

    async def fetchall(self, query: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        async with self.conn.execute(query, parameters) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, query: str, parameters: tuple[Any, ...] = ()) -> Any:
        async with self.conn.execute(query, parameters) as cursor:
            return await cursor.fetchone()
