"""docs/security.md, "A run that outlives its lease keeps writing": the worker's claim loop extends a running
attempt's lease, and stops writing
once the backend says the lease is another worker's. Real backend and PostgreSQL, the simulator
over HTTP with every request slowed down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from bot_worker.backend.client import BackendClient
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.worker.claim_loop import ClaimLoop
from bot_worker.worker.executor import Executor
from prgate.simulator import FaultConfig, FaultProfile
from tests.conftest import INTERNAL_SECRET
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.outbox import install, seed_actions
from tests.support.processes import eventually
from tests.support.signed import SignedClient


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _one_action_on_pr_7(backend: SignedClient, db: asyncpg.Pool) -> int:
    await install(backend)
    [action_id] = await seed_actions(db, 1)
    async with db.acquire() as conn:  # the simulator's PR
        await conn.execute("UPDATE bot_actions SET pr_number = 7 WHERE action_id = $1", action_id)
    return action_id


@contextlib.asynccontextmanager
async def running(loop: ClaimLoop) -> AsyncIterator[None]:
    task = asyncio.create_task(loop.run())
    try:
        yield
    finally:
        await loop.stop(grace=1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _loop(session: aiohttp.ClientSession, backend: SignedClient, simulator: Simulator, lease: int,
          provider_timeout: float = 2) -> ClaimLoop:
    tokens = InstallationTokens(session, simulator.url, str(APP_ID), app_keys().private_pem)
    executor = Executor(GitHubProvider(session, simulator.url, tokens), None, provider_timeout=provider_timeout,
                        report_margin=1)
    client = BackendClient(session, str(backend.client.make_url("")), INTERNAL_SECRET)
    return ClaimLoop(client, executor, worker_id="w1", concurrency=1, lease_seconds=lease, wait_seconds=0.5)


async def _status(db: asyncpg.Pool, action_id: int) -> asyncpg.Record:
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempt, lease_owner FROM bot_actions WHERE action_id = $1",
                                  action_id)
    assert row is not None
    return row


async def test_an_attempt_longer_than_its_lease_is_extended_and_finishes_once(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    action_id = await _one_action_on_pr_7(backend, db)
    # GET /app, the token, the listing and the create take 1.5 s each: 6 s, the whole lease.
    simulator.state.faults.configure(FaultConfig(content_throttle=False, default=FaultProfile(latency_ms=1500)))
    async with running(_loop(session, backend, simulator, lease=6)):
        async def done() -> bool:
            return (await _status(db, action_id))["status"] == "DONE"

        await eventually(done, timeout=30)
    assert (await _status(db, action_id))["attempt"] == 1  # never handed back, never taken over
    assert [c.body for c in simulator.state.comments_for("octo-org/widgets", 7)] == ["<!-- m -->\nbody 0"]


async def test_a_lease_taken_over_stops_the_attempts_writes(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator, session: aiohttp.ClientSession
) -> None:
    action_id = await _one_action_on_pr_7(backend, db)
    # 2.5 s a request: the create would start at 7.5 s with 4.5 s of a 12 s lease left (enough for a
    # 3 s write and a 1 s report), but at 6 s the extension is refused: another worker holds it.
    simulator.state.faults.configure(FaultConfig(content_throttle=False, default=FaultProfile(latency_ms=2500)))
    async with running(_loop(session, backend, simulator, lease=12, provider_timeout=3)):
        async def claimed() -> bool:
            return (await _status(db, action_id))["lease_owner"] == "w1"

        await eventually(claimed, timeout=10, interval=0.05)
        async with db.acquire() as conn:  # as if the lease had expired and another worker claimed it
            await conn.execute("UPDATE bot_actions SET lease_owner = 'thief', attempt = attempt + 1, "
                               "lease_expires_at = now() + interval '60 seconds' WHERE action_id = $1", action_id)

        async def listed() -> bool:
            return any(r.method == "GET" and r.path.endswith("/issues/7/comments")
                       for r in simulator.state.request_log)

        await eventually(listed, timeout=30)
        await asyncio.sleep(3)  # past the moment the create would have started
    assert not [r for r in simulator.state.request_log if r.method == "POST" and "comments" in r.path]
    assert simulator.state.comments_for("octo-org/widgets", 7) == []
    assert (await _status(db, action_id))["lease_owner"] == "thief"
