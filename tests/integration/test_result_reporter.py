"""The worker's ResultReporter against the real backend, and against an older backend without the batch route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot_worker.backend.client import BackendClient
from bot_worker.providers.base import Classified
from bot_worker.worker.reporter import ResultReporter
from shared_contracts.actions import ClaimedAction, ClaimRequest, Outcome
from tests.conftest import INTERNAL_SECRET
from tests.support.outbox import RESULTS, install, seed_actions
from tests.support.signed import SignedClient


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _client(session: aiohttp.ClientSession, backend: SignedClient) -> BackendClient:
    return BackendClient(session, str(backend.client.make_url("")), INTERNAL_SECRET)


def _deadline() -> float:
    return time.monotonic() + 60


async def _result_calls(backend: SignedClient) -> float:
    text = await (await backend.client.get("/metrics")).text()
    prefix = f'backend_http_requests_total{{method="POST",route="{RESULTS}",status="200"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


async def test_results_finishing_together_go_in_one_call(
    backend: SignedClient, db: asyncpg.Pool, session: aiohttp.ClientSession
) -> None:
    await install(backend)
    await seed_actions(db, 20)
    client = _client(session, backend)
    claimed = (await client.claim(ClaimRequest(worker_id="w1", max_actions=20))).actions
    reporter = ResultReporter(client, "w1")
    await asyncio.gather(*(reporter.report(a, Classified(Outcome.SUCCEEDED, None), _deadline()) for a in claimed))
    async with db.acquire() as conn:
        done = await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'DONE'")
    assert done == 20
    assert await _result_calls(backend) == 1


async def test_results_arriving_one_after_another_are_each_sent_at_once(
    backend: SignedClient, db: asyncpg.Pool, session: aiohttp.ClientSession
) -> None:
    await install(backend)
    await seed_actions(db, 3)
    client = _client(session, backend)
    claimed = (await client.claim(ClaimRequest(worker_id="w1", max_actions=3))).actions
    reporter = ResultReporter(client, "w1")
    for a in claimed:  # nothing waits for company: a lone result costs one call
        await reporter.report(a, Classified(Outcome.SUCCEEDED, None), _deadline())
    assert await _result_calls(backend) == 3


class OldBackend:
    """A backend from before the batch route: single results only, the first attempt of each refused 503."""

    def __init__(self) -> None:
        self.single: list[tuple[int, dict[str, Any]]] = []
        self.batch_calls = 0
        self.app = web.Application()
        self.app.router.add_post("/internal/v2/bot-actions/{action_id}/result", self.result)
        self.app.router.add_post(RESULTS, self.results)

    async def results(self, request: web.Request) -> web.Response:
        self.batch_calls += 1
        return web.json_response({"error": "not_found", "message": "no such route"}, status=404)

    async def result(self, request: web.Request) -> web.Response:
        action_id = int(request.match_info["action_id"])
        body = await request.json()
        self.single.append((action_id, body))
        if sum(1 for i, _ in self.single if i == action_id) == 1:
            return web.json_response({"error": "unavailable", "message": "try again"}, status=503)
        return web.json_response({"action_id": action_id, "status": "DONE", "next_attempt_at": None})


def _action(action_id: int) -> ClaimedAction:
    return ClaimedAction.model_validate({
        "action_id": action_id, "attempt": 1, "lease_expires_at": "2030-01-01T00:00:00Z", "provider": "github",
        "action_type": "UPSERT_PR_COMMENT", "installation_id": 1, "repo_id": 1, "repo_full_name": "o/r",
        "github_pr_number": 1,
        "payload": {"marker": "<!-- m -->", "body": "b"},
    })


async def test_an_older_backend_gets_single_results_retried_until_accepted(session: aiohttp.ClientSession) -> None:
    old = OldBackend()
    server = TestServer(old.app)
    await server.start_server()
    try:
        client = BackendClient(session, str(server.make_url("")), INTERNAL_SECRET)
        reporter = ResultReporter(client, "w1", sleep=lambda _s: asyncio.sleep(0))
        outcomes = [Classified(Outcome.SUCCEEDED, None), Classified(Outcome.RETRYABLE_FAILURE, "503", 5.0)]
        await asyncio.gather(
            *(reporter.report(_action(i), o, _deadline()) for i, o in zip((1, 2), outcomes, strict=True))
        )
        await reporter.report(_action(3), Classified(Outcome.SUCCEEDED, None), _deadline())
    finally:
        await server.close()
    assert old.batch_calls == 1  # asked once, then remembered
    accepted = dict(old.single)  # the last call for each action is the one answered 200
    assert sorted(accepted) == [1, 2, 3]
    assert [i for i, _ in old.single].count(1) == 2  # the 503 was retried, once
    assert accepted[2]["outcome"] == "RETRYABLE_FAILURE"
    assert accepted[2]["retry_after_seconds"] == 5.0
