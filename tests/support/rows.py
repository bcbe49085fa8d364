"""Snapshots of every table, to assert that a rejected request changed nothing."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import TABLES

BUSINESS_TABLES = tuple(t for t in TABLES if t != "internal_nonces")


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    async with pool.acquire() as conn:
        for table in BUSINESS_TABLES:
            rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
            out[table] = [dict(r) for r in rows]
    return out
