"""The real backend under test: started as a process or served from this event loop, called through its
signed internal API as a worker would, and its outbox seeded with actions to claim."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from backend_api.app import create_app
from backend_api.settings import BackendSettings
from bench.harness.stack import Stack, StackProcess, free_port, internal_keys, wait_http_ok
from shared_contracts.signing import sign

CLAIM_PATH = "/internal/v2/bot-actions/claim"
INSTALLATION_ID = 1001
REPO = "bench-org/widgets"
LEASE_SECONDS = 600  # never expires during a cell: every action is claimed exactly once
DB_POOL_MAX = 20


@dataclass(slots=True)
class Backend:
    """A running backend: its base URL and, when it is a separate process, that process."""

    base_url: str
    pid: int | None
    secret: str  # the claimers sign with it, as workers
    proc: StackProcess | None = None


def backend_env(database_url: str, secret: str, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        **internal_keys(worker_secret=secret),
        "BACKEND_HOST": "127.0.0.1",
        "BACKEND_PORT": str(port),
        "DB_POOL_MAX": str(DB_POOL_MAX),
        "LOG_LEVEL": "WARNING",
    }


@contextlib.asynccontextmanager
async def backend_process(database_url: str, secret: str, stack: Stack | None = None) -> AsyncIterator[Backend]:
    """`python -m prgate.cli backend` in its own process (the client does not share its core or loop),
    under `stack` (a fresh one if None): stopped on exit, killed with this process."""
    stack = stack or Stack()
    port = free_port()
    proc = stack.start_component("backend", "backend", backend_env(database_url, secret, port))
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http_ok(session, f"{base_url}/readyz", proc)
        yield Backend(base_url, proc.pid, secret, proc)
    finally:
        stack.stop(proc, grace=15)


@contextlib.asynccontextmanager
async def backend_in_process(database_url: str, secret: str) -> AsyncIterator[Backend]:
    """`create_app` on an AppRunner in this event loop: client and server share one core."""
    settings = BackendSettings.model_validate(
        {"DATABASE_URL": database_url, **internal_keys(worker_secret=secret), "DB_POOL_MAX": DB_POOL_MAX}
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Backend(f"http://127.0.0.1:{port}", None, secret)
    finally:
        await runner.cleanup()


# --- the internal API, as a worker calls it --------------------------------------------------------------


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def signed_post(session: aiohttp.ClientSession, secret: str, path: str, body: bytes) -> tuple[int, Any]:
    """One signed POST (fresh timestamp and nonce); (0, reason) when the request itself failed."""
    headers = {"Content-Type": "application/json", **sign(secret, "POST", path, body)}
    try:
        async with session.post(path, data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw[:200].decode(errors="replace")


async def warm_up(backend: Backend) -> None:
    """Grow the backend's pool to its maximum with concurrent empty claims."""
    async with aiohttp.ClientSession(base_url=backend.base_url) as session:
        body = dumps({"worker_id": "warm-up", "max_actions": 1})
        for _ in range(3):
            await asyncio.gather(*(signed_post(session, backend.secret, CLAIM_PATH, body)
                                   for _ in range(DB_POOL_MAX * 2)))


@dataclass(slots=True)
class Tally:
    """What the claimers of one cell did, summed."""

    claims: int = 0
    actions: int = 0
    errors: int = 0
    first_error: str = ""

    def error(self, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message


# --- the outbox ------------------------------------------------------------------------------------------


async def insert_installation(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO github_installations (installation_id, account_id, account_login, account_type,
                                                 repository_selection, status)
               VALUES ($1, 42, 'bench-org', 'Organization', 'all', 'ACTIVE')""",
            INSTALLATION_ID,
        )


async def reset_and_seed(pool: asyncpg.Pool, count: int) -> None:
    """Empty the outbox and the nonce table, then insert `count` PENDING actions, one PR each."""
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE bot_actions, internal_nonces RESTART IDENTITY")
        await conn.execute(
            """INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number,
                                        payload, max_attempts)
               SELECT 'github', 'UPSERT_PR_COMMENT', $1, 5001, $2, 1 + g,
                      jsonb_build_object('marker', '<!-- prgate -->', 'body', 'Please verify, #' || g), 8
               FROM generate_series(0, $3 - 1) g
               ORDER BY g""",
            INSTALLATION_ID, REPO, count,
        )
        await conn.execute("ANALYZE bot_actions")
        # Start every cell with no dirty buffers to flush (needs superuser or pg_checkpoint).
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CHECKPOINT")


async def claimable_left(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT count(*) FROM bot_actions WHERE status = 'PENDING' AND next_attempt_at <= now()"
        )
    return int(value)
