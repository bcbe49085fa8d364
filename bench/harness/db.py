"""Throwaway PostgreSQL databases on the server the tests would use, and the pids that serve one."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass

import asyncpg

from backend_api.store.migrate import apply_migrations
from tests.support.services import postgres_admin_url, with_database


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    url: str
    name: str
    server_version: str


async def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """An empty database with a unique name: (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bench_database(stack: ExitStack, prefix: str = "prgate_bench") -> AsyncIterator[BenchDatabase]:
    """A fresh, migrated database on the PostgreSQL the tests would use; dropped on exit."""
    admin = stack.enter_context(postgres_admin_url(stack))
    name, url = await create_database(admin, prefix)
    try:
        conn = await asyncpg.connect(url)
        try:
            version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
        await apply_migrations(url)
        yield BenchDatabase(url=url, name=name, server_version=version)
    finally:
        await drop_database(admin, name)


async def init_connection(conn: asyncpg.Connection) -> None:
    """As the backend's pool does (backend_api.store.db): jsonb in and out as Python objects."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def postgres_pids(pool: asyncpg.Pool) -> list[int]:
    """Our database's backends plus the server's auxiliary processes (WAL writer, checkpointer...)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() OR backend_type <> 'client backend'"""
        )
    return [int(r["pid"]) for r in rows]
