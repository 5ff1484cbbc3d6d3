from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.store import Migration, Store, load_migrations

V1 = Migration(1, "0001_a.sql", "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
V2 = Migration(
    2,
    "0002_b.sql",
    """
    -- b references a
    CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER NOT NULL REFERENCES a (id));
    ALTER TABLE a ADD COLUMN note TEXT NOT NULL DEFAULT '';
    """,
)


async def tables(store: Store) -> set[str]:
    async with store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'") as cur:
        return {row[0] for row in await cur.fetchall()}


async def test_fresh_database_gets_every_shipped_migration(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "hfcord.sqlite3"
    store = await Store.open(path)
    try:
        assert path.exists()
        assert await store.schema_version() == len(load_migrations())
        assert "audit_log" in await tables(store)
        async with store.conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with store.conn.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
    finally:
        await store.close()


async def test_reopening_runs_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path, migrations=[V1, V2])
    await store.conn.execute("INSERT INTO a (name) VALUES ('kept')")
    await store.close()
    store = await Store.open(path, migrations=[V1, V2])
    try:
        assert await store.migrate([V1, V2]) == 0
        assert await store.schema_version() == 2
        async with store.conn.execute("SELECT name FROM a") as cur:
            assert [row[0] for row in await cur.fetchall()] == ["kept"]
    finally:
        await store.close()


async def test_upgrade_from_an_older_schema_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path, migrations=[V1])
    await store.conn.execute("INSERT INTO a (name) VALUES ('old row')")
    await store.close()

    store = await Store.open(path, migrations=[V1, V2])
    try:
        assert await store.schema_version() == 2
        async with store.conn.execute("SELECT name, note FROM a") as cur:
            assert [tuple(row) for row in await cur.fetchall()] == [("old row", "")]
        # foreign keys are enforced on the new table
        with pytest.raises(aiosqlite.IntegrityError):
            await store.conn.execute("INSERT INTO b (a_id) VALUES (42)")
    finally:
        await store.close()


async def test_a_failing_migration_leaves_the_schema_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path, migrations=[V1])
    broken = Migration(2, "0002_broken.sql", "CREATE TABLE c (id INTEGER); CREATE TABLE a (x);")
    try:
        with pytest.raises(aiosqlite.OperationalError):
            await store.migrate([V1, broken])
        assert await store.schema_version() == 1
        assert "c" not in await tables(store)  # the first statement was rolled back too
    finally:
        await store.close()


async def test_audit_log_round_trip_under_concurrency(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        await asyncio.gather(
            *(store.audit(guild_id=7, user_id=i, action="test", detail=str(i)) for i in range(20))
        )
        entries = await store.recent_audit(7, limit=50)
        assert sorted(e.user_id for e in entries) == list(range(20))
        assert await store.recent_audit(8) == []
    finally:
        await store.close()


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def _open_in_step(path: str, barrier: Any) -> None:
    """(In a child process.) Open the store, pausing right after the first version read until
    the other process has read it too: the worst interleaving, every time."""

    async def main() -> None:
        read_version = Store.schema_version
        paused = False

        async def schema_version(self: Store) -> int:
            nonlocal paused
            version = await read_version(self)
            if not paused:
                paused = True
                await asyncio.to_thread(barrier.wait, 30)
            return version

        Store.schema_version = schema_version  # type: ignore[method-assign]
        store = await Store.open(path)
        await store.audit(guild_id=None, user_id=1, action="opened")
        await store.close()

    asyncio.run(main())


def test_two_processes_opening_a_fresh_data_folder_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "hfcord.sqlite3"
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    processes = [spawn.Process(target=_open_in_step, args=(str(path), barrier)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0]  # neither applied a migration twice

    async def check() -> None:
        store = await Store.open(path)
        try:
            assert await store.schema_version() == len(load_migrations())
            assert len(await store.recent_audit(None)) == 2
        finally:
            await store.close()

    asyncio.run(check())
