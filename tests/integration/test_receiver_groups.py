"""The receiver forwards pull_request deliveries that arrive together in one backend call
(bot_worker/webhooks/group.py).

Against the real backend and PostgreSQL: groups form under concurrency and every delivery still
gets its own answer. Against a stub backend (for what the real one does not do on demand): an older
backend without the group route, a group refused as a whole, a backend that is down, and an
error item for one delivery — each delivery ends forwarded, rejected or queued exactly as with the
single call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot_worker.jobs.forward import job_id
from bot_worker.webhooks.app import create_receiver_app
from tests.support.payloads import pull_request_payload
from tests.support.webhooks import (
    TestQueue,
    bot_settings,
    fetch,
    fresh_queue,
    installed_receiver,
    metric,
    post_webhook,
)

SINGLE = "/internal/v2/github/events/pull-request"
GROUP = "/internal/v2/github/events/pull-requests"
GROUPS = "forward_group_deliveries"


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


def _payload(n: int) -> dict[str, Any]:
    return pull_request_payload("opened", number=1000 + n, author_login=f"g-{n}", author_id=90_000 + n)


async def _post_many(client: TestClient[Any, Any], count: int, ids: list[str] | None = None) -> list[tuple[int, Any]]:
    ids = ids or [str(uuid.uuid4()) for _ in range(count)]

    async def one(n: int) -> tuple[int, Any]:
        resp = await post_webhook(client, "pull_request", _payload(n), ids[n])
        return resp.status, await resp.json()

    return list(await asyncio.gather(*(one(n) for n in range(count))))


# ---- the real backend ---------------------------------------------------------------------------------


@pytest.fixture
async def receiver(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> TestClient[Any, Any]:
    return await installed_receiver(database_url, redis_url, queue, aiohttp_server, aiohttp_client)


async def test_concurrent_deliveries_go_in_groups_and_each_gets_its_own_answer(
    receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    count = 40
    ids = [str(uuid.uuid4()) for _ in range(count)]
    answers = await _post_many(receiver, count, ids)
    assert [status for status, _ in answers] == [200] * count
    assert [body["delivery_id"] for _, body in answers] == ids
    assert {(body["status"], body["decision"]) for _, body in answers} == {("ACCEPTED", "GATE")}
    challenges = await fetch(db, "SELECT pr_number FROM challenges")
    assert sorted(r["pr_number"] for r in challenges) == [1000 + n for n in range(count)]
    # Groups formed: fewer group calls than deliveries, none larger than the deliveries sent.
    calls = await metric(receiver, f"{GROUPS}_count")
    assert 1 <= calls < count
    assert calls * 2 <= await metric(receiver, f"{GROUPS}_sum") <= count
    assert await queue.job_ids() == set()


async def test_copies_of_one_delivery_in_flight_together_are_applied_once(
    receiver: TestClient[Any, Any], db: asyncpg.Pool
) -> None:
    delivery = str(uuid.uuid4())
    answers = await asyncio.gather(*(
        post_webhook(receiver, "pull_request", _payload(0), delivery) for _ in range(12)
    ))
    statuses = Counter([(resp.status, (await resp.json())["status"]) for resp in answers])
    assert statuses == {(200, "ACCEPTED"): 1, (200, "DUPLICATE"): 11}
    assert len(await fetch(db, "SELECT 1 FROM challenges")) == 1
    assert len(await fetch(db, "SELECT 1 FROM bot_actions")) == 2


# ---- a stub backend -----------------------------------------------------------------------------------


class StubBackend:
    """Answers like the backend would, with the group route's behaviour chosen by the test; counts calls."""

    def __init__(self, group_status: int = 200, single_status: int = 200, *, delay: float = 0.05) -> None:
        self.group_status = group_status
        self.single_status = single_status
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.grouped: list[int] = []
        self.grouped_ids: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(SINGLE, self.single)
        app.router.add_post(GROUP, self.group)
        return app

    async def single(self, request: web.Request) -> web.Response:
        self.calls[SINGLE] += 1
        event = await request.json()
        await asyncio.sleep(self.delay)  # long enough for the next deliveries to wait and group
        if self.single_status != 200:
            return web.json_response({"error": "stub", "message": "single refused"}, status=self.single_status)
        return web.json_response(_accepted(event["delivery_id"]))

    async def group(self, request: web.Request) -> web.Response:
        self.calls[GROUP] += 1
        events = (await request.json())["events"]
        self.grouped.append(len(events))
        self.grouped_ids.update(e["delivery_id"] for e in events)
        await asyncio.sleep(self.delay)
        if self.group_status != 200:
            return web.json_response({"error": "stub", "message": "group refused"}, status=self.group_status)
        return web.json_response({"results": [
            {"response": None, "error": {"error": "unavailable", "message": "database unavailable"}}
            if e["delivery_id"].startswith("boom") else {"response": _accepted(e["delivery_id"]), "error": None}
            for e in events
        ]})


def _accepted(delivery_id: str) -> dict[str, Any]:
    return {"status": "ACCEPTED", "delivery_id": delivery_id, "decision": "GATE", "challenge_id": 1,
            "enqueued_action_ids": [1, 2], "reason": None}


async def _receiver(
    stub: StubBackend, redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any, **updates: Any
) -> TestClient[Any, Any]:
    server = await aiohttp_server(stub.app())
    client: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(server.make_url("/")), redis_url, queue.name, **updates))
    )
    return client


async def test_a_backend_without_the_group_route_is_sent_one_delivery_per_call_from_then_on(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    stub = StubBackend(group_status=404)
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client, forward_group_lanes=1)
    first = await _post_many(client, 20)
    second = await _post_many(client, 20)
    assert {(status, body["status"]) for status, body in first + second} == {(200, "ACCEPTED")}
    assert stub.calls[GROUP] == 1  # asked once, then never again
    assert stub.calls[SINGLE] == 40
    assert await queue.job_ids() == set()


@pytest.mark.parametrize("status", [413, 422])
async def test_a_group_refused_as_a_whole_is_sent_one_by_one(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any, status: int
) -> None:
    stub = StubBackend(group_status=status)
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client, forward_group_lanes=1)
    answers = await _post_many(client, 20)
    assert {(code, body["status"]) for code, body in answers} == {(200, "ACCEPTED")}
    assert stub.calls[GROUP] >= 1
    assert stub.calls[SINGLE] == 20  # every delivery, each once: the refused groups' ones singly
    assert await queue.job_ids() == set()


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_backend_that_fails_the_group_gets_each_delivery_queued(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any, status: int
) -> None:
    stub = StubBackend(group_status=status, single_status=status)
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client, forward_group_lanes=1)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    answers = await _post_many(client, 20, ids)
    assert [(code, body) for code, body in answers] == [
        (202, {"status": "queued", "delivery_id": i}) for i in ids
    ]
    assert stub.calls[GROUP] >= 1
    assert await queue.job_ids() == {job_id("pull_request", i) for i in ids}


async def test_an_error_item_queues_that_delivery_only(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    stub = StubBackend()
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client, forward_group_lanes=1)
    ids = [str(uuid.uuid4()) for _ in range(20)]
    ids[10] = "boom-" + ids[10]
    answers = await _post_many(client, 20, ids)
    assert ids[10] in stub.grouped_ids  # it went in a group (the stub's single call would accept it)
    by_id = {body["delivery_id"]: (code, body["status"]) for code, body in answers}
    assert by_id.pop(ids[10]) == (202, "queued")
    assert set(by_id.values()) == {(200, "ACCEPTED")}
    assert await queue.job_ids() == {job_id("pull_request", ids[10])}


async def test_forwarding_one_delivery_per_call_when_groups_are_off(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    stub = StubBackend()
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client, forward_group_max=1)
    answers = await _post_many(client, 10)
    assert {(code, body["status"]) for code, body in answers} == {(200, "ACCEPTED")}
    assert stub.calls == {SINGLE: 10}


async def test_deliveries_waiting_behind_a_hung_backend_are_queued_after_their_own_timeout(
    redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    """Each delivery keeps the single call's budget (FORWARD_TIMEOUT_SECONDS) from its arrival: the ones
    waiting for a lane are given up and queued, never sent one slow group call after another."""
    stub = StubBackend(delay=3.0)  # answers, but only after the receiver's 1 s budget
    client = await _receiver(stub, redis_url, queue, aiohttp_server, aiohttp_client,
                             forward_timeout_seconds=1.0, forward_group_lanes=1, forward_group_max=5)
    ids = [str(uuid.uuid4()) for _ in range(30)]
    answers = await _post_many(client, 30, ids)
    assert [(code, body) for code, body in answers] == [(202, {"status": "queued", "delivery_id": i}) for i in ids]
    assert await queue.job_ids() == {job_id("pull_request", i) for i in ids}
    # One lane, groups of 5: without a deadline per delivery the 29 waiting would have gone in six
    # calls, one after another. With it they expire together while the first call hangs.
    assert sum(stub.calls.values()) <= 2
