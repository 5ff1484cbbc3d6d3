"""Passage vectors in a sqlite-vec table, and which embedding model they came from.

``passage_vectors`` is a ``vec0`` table (rowid = passage id) partitioned by channel, so a
nearest-neighbour search reads only the asking channel's vectors, from disk: nothing is held in
memory per channel. Its dimension is the embedding model's, so it is created with the first
vectors, and dropped (every passage marked for embedding again) when the model changes.
Every function here runs on the index connection, most inside its caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

TABLE = "passage_vectors"
_MODEL_KEY = "embedding_model"
_DIMENSION_KEY = "embedding_dimension"


class DimensionChanged(Exception):
    """Vectors of another length than the stored ones: the model is not the one indexed."""


async def _state(conn: Any, key: str) -> str | None:
    async with conn.execute("SELECT value FROM document_index_state WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row is not None else None


async def _set_state(conn: Any, key: str, value: str | None) -> None:
    if value is None:
        await conn.execute("DELETE FROM document_index_state WHERE key = ?", (key,))
    else:
        await conn.execute(
            "INSERT INTO document_index_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


async def table_exists(conn: Any) -> bool:
    async with conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)) as cur:
        return await cur.fetchone() is not None


async def dimension(conn: Any) -> int | None:
    """The stored vectors' dimension (None before the first ones)."""
    value = await _state(conn, _DIMENSION_KEY)
    return int(value) if value is not None and await table_exists(conn) else None


async def indexed_model(conn: Any) -> str | None:
    return await _state(conn, _MODEL_KEY)


async def reset(conn: Any, model_key: str | None) -> None:
    """Forget every vector: drop the table, mark all passages for embedding with ``model_key``."""
    await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    await conn.execute("UPDATE passages SET embedded = 0 WHERE embedded != 0")
    await _set_state(conn, _DIMENSION_KEY, None)
    await _set_state(conn, _MODEL_KEY, model_key)


async def use_model(conn: Any, model_key: str) -> bool:
    """Record that vectors come from ``model_key``; True when that reset vectors of another."""
    stored = await indexed_model(conn)
    if stored == model_key:
        return False
    await reset(conn, model_key)
    if stored is not None:
        log.info("embedding model changed from %s to %s: re-indexing", stored, model_key)
    return stored is not None


async def insert(conn: Any, rows: Sequence[tuple[int, int, bytes]]) -> None:
    """Store (passage id, channel id, float32 vector) rows, creating the table on first use."""
    if not rows:
        return
    size = len(rows[0][2]) // 4
    if any(len(vector) != size * 4 for _, _, vector in rows):
        raise DimensionChanged("vectors of different lengths in one batch")
    current = await dimension(conn)
    if current is None:
        await conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING vec0("
            f"channel_id integer partition key, embedding float[{size:d}] distance_metric=cosine)"
        )
        await _set_state(conn, _DIMENSION_KEY, str(size))
    elif current != size:
        raise DimensionChanged(f"the index holds {current}-dimensional vectors, not {size}")
    await conn.executemany(
        f"INSERT OR REPLACE INTO {TABLE} (rowid, channel_id, embedding) VALUES (?, ?, ?)", rows
    )


async def delete(conn: Any, passage_ids: Iterable[int]) -> None:
    ids = [(passage_id,) for passage_id in passage_ids]
    if ids and await table_exists(conn):
        await conn.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", ids)


async def read(conn: Any, passage_ids: Sequence[int]) -> dict[int, bytes]:
    """The stored vectors of ``passage_ids`` (those that have one)."""
    if not passage_ids or not await table_exists(conn):
        return {}
    marks = ",".join("?" * len(passage_ids))
    query = f"SELECT rowid, embedding FROM {TABLE} WHERE rowid IN ({marks})"
    async with conn.execute(query, tuple(passage_ids)) as cur:
        return {int(row[0]): bytes(row[1]) for row in await cur.fetchall()}


async def nearest(conn: Any, channel_id: int, vector: bytes, k: int) -> list[tuple[int, float]]:
    """The ``k`` passages of ``channel_id`` nearest ``vector``: (passage id, cosine similarity)."""
    stored = await dimension(conn)
    if stored is None or stored * 4 != len(vector):
        return []
    query = (
        f"SELECT rowid, distance FROM {TABLE} "
        "WHERE embedding MATCH ? AND k = ? AND channel_id = ? ORDER BY distance"
    )
    async with conn.execute(query, (vector, k, channel_id)) as cur:
        return [(int(row[0]), 1.0 - float(row[1])) for row in await cur.fetchall()]
