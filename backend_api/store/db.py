"""Connection pool setup. The backend is the only process that talks to PostgreSQL."""

from __future__ import annotations

import json

import asyncpg
from asyncpg.pool import PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).

    Pool connections never take session advisory locks, LISTEN or SET anything, and asyncpg still
    rolls back an open transaction before calling this; skipping the query saves a round trip per
    request (measured: see docs/benchmarks.md).
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


# What store functions accept: a plain connection or one borrowed from the pool.
Conn = asyncpg.Connection | PoolConnectionProxy


# What "the database is unavailable right now" looks like: a closed pool or a timeout too.
DATABASE_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
