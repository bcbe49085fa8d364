"""Bitbucket deliveries through the real receiver to the real backend (its signed Bitbucket ingest
routes, real PostgreSQL), the author's permission asked of the Bitbucket simulator; and a delivery
parked while the backend was away, replayed by the real forward job."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import RedisSettings
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry

from backend_api.app import create_app
from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import JobContext
from bot_worker.jobs.forward import forward_worker
from bot_worker.metrics import Metrics
from bot_worker.webhooks.app import create_receiver_app
from prgate.simulator.bitbucket.state import BitbucketState
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.bitbucket import connect_stored, load, post, simulator_server
from tests.support.webhooks import TestQueue, bot_settings, closed_port, fresh_queue

pytestmark = [
    # arq's Worker.close() calls redis' deprecated close(); not ours to fix.
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]

KEY = Fernet.generate_key().decode()
WORKSPACE = "7d3a178a-a087-4756-b2da-2f9eadf50ba8"  # cloud__pullrequest_updated.json's workspace


@dataclass
class Bitbucket:
    sim: BitbucketState
    api_url: str


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
async def bitbucket(db: asyncpg.Pool) -> AsyncIterator[Bitbucket]:
    async with simulator_server() as (sim, api_url):
        sim.add_workspace("nfalco79", uuid=WORKSPACE)
        token = sim.create_token("nfalco79")
        sim.add_repository("nfalco79", "test-repos")
        await connect_stored(db, KEY, workspace_uuid=WORKSPACE, slug="nfalco79", token=token.value)
        yield Bitbucket(sim, api_url)


def _backend_app(database_url: str, bitbucket: Bitbucket) -> web.Application:
    return create_app(backend_settings(database_url, PRGATE_ENCRYPTION_KEY=KEY, BITBUCKET_API_URL=bitbucket.api_url))


async def _challenges(db: asyncpg.Pool) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch("SELECT provider, pr_number, status FROM challenges ORDER BY challenge_id"))


async def test_a_pull_request_is_forwarded_and_gated_once(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, bitbucket: Bitbucket,
    aiohttp_server: Any, aiohttp_client: Any,
) -> None:
    backend = await aiohttp_server(_backend_app(database_url, bitbucket))
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url, queue.name))
    )
    request_uuid = str(uuid.uuid4())
    payload = load("cloud__pullrequest_updated.json")
    resp = await post(receiver, "pullrequest:created", payload, request_uuid=request_uuid)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert (answer["status"], answer["delivery_id"]) == ("ACCEPTED", request_uuid)
    again = await post(receiver, "pullrequest:created", payload, request_uuid=request_uuid)
    assert again.status == 200
    assert (await again.json())["status"] == "DUPLICATE"
    assert [(c["provider"], c["pr_number"]) for c in await _challenges(db)] == [("bitbucket", 1)]
    assert await queue.job_ids() == set()


async def test_a_delivery_parked_while_the_backend_was_away_is_replayed_once(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, bitbucket: Bitbucket,
    aiohttp_client: Any,
) -> None:
    with closed_port() as port:
        pass  # the backend's address, down first, then up
    backend_url = f"http://127.0.0.1:{port}"
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(backend_url, redis_url, queue.name))
    )
    resp = await post(receiver, "pullrequest:created", load("cloud__pullrequest_updated.json"), request_uuid="p-1")
    assert resp.status == 202, await resp.text()
    assert await _challenges(db) == []

    backend = TestServer(_backend_app(database_url, bitbucket), port=port)
    await backend.start_server()
    try:
        metrics = Metrics(CollectorRegistry(), "worker")
        async with aiohttp.ClientSession() as session:
            ctx = JobContext(BackendClient(session, backend_url, INTERNAL_SECRET), metrics).arq_ctx()
            worker = forward_worker(RedisSettings.from_dsn(redis_url), queue.name, ctx, metrics, burst=True,
                                    poll_delay=0.05, max_jobs=5)
            try:
                await worker.async_run()
            finally:
                await worker.close()
    finally:
        await backend.close()
    assert [(c["provider"], c["pr_number"]) for c in await _challenges(db)] == [("bitbucket", 1)]
    assert metrics.registry.get_sample_value("forward_queue_total", {"outcome": "delivered"}) == 1


async def test_a_push_to_the_main_branch_is_forwarded_and_the_config_file_read(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, bitbucket: Bitbucket,
    aiohttp_server: Any, aiohttp_client: Any,
) -> None:
    """A real `repo:push` body (it names no main branch): the backend asks Bitbucket which branch is
    the main one, reads `.prgate.yml` there and enqueues the `prgate/config` status on the pushed commit."""
    repo = bitbucket.sim.repository("nfalco79", "test-repos")
    repo.branches["feature/webhook"] = repo.branches[repo.mainbranch]
    repo.mainbranch = "feature/webhook"  # the fixture's push moved this branch
    bitbucket.sim.commit_file("nfalco79", "test-repos", ".prgate.yml", "warn_only: true\n", author=None)
    backend = await aiohttp_server(_backend_app(database_url, bitbucket))
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url, queue.name))
    )
    resp = await post(receiver, "repo:push", load("cloud__signed_payload.json"), request_uuid="push-1")
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert (answer["status"], answer["reason"]) == ("ACCEPTED", "config file in force")
    async with db.acquire() as conn:
        config = await conn.fetchval("SELECT config FROM repo_config_files")
        status = await conn.fetchrow(
            "SELECT provider, pr_number, payload->>'sha' AS sha, payload->>'state' AS state FROM bot_actions")
    assert config == {"warn_only": True}
    assert dict(status) == {"provider": "bitbucket", "pr_number": 0, "state": "success",
                            "sha": "d7f300a32270053bdfd97a6d64113f58202c33e7"}
