"""The redelivery job's selection: which failed GitHub deliveries to ask GitHub to redeliver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from backend_api.store import deliveries
from bot_worker.backend.client import KNOWN_DELIVERIES_PATH, BackendClient
from bot_worker.jobs.context import JobContext, RedeliveryContext
from bot_worker.jobs.redelivery import (
    redeliver_failed,
    select_failed,
    select_for_redelivery,
)
from bot_worker.metrics import Metrics
from bot_worker.providers.github.deliveries import Attempt, parse_attempt
from bot_worker.providers.github.paging import next_link
from prgate.simulator import SimulatorConfig, create_simulator_app
from provider_clients.github.app import app_jwt
from tests.conftest import INTERNAL_SECRET
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import eventually
from tests.support.signed import SignedClient

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WINDOW_START = NOW - timedelta(hours=72)


def attempt(id_: int, guid: str, status: int, *, age: timedelta = timedelta(minutes=5)) -> Attempt:
    return Attempt(id=id_, guid=guid, delivered_at=NOW - age, status_code=status, event="pull_request")


def guids(attempts: list[Attempt]) -> list[str]:
    return [a.guid for a in attempts]


@pytest.mark.parametrize("status", [0, 400, 401, 404, 500, 502, 503, 302, 199])
def test_a_failed_delivery_is_selected(status: int) -> None:
    assert guids(select_for_redelivery([attempt(1, "a", status)], not_before=WINDOW_START)) == ["a"]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_succeeded_delivery_is_not_selected(status: int) -> None:
    assert select_for_redelivery([attempt(1, "a", status)], not_before=WINDOW_START) == []


def test_a_guid_with_any_succeeded_attempt_is_skipped_whatever_the_order() -> None:
    attempts = [
        attempt(1, "a", 0), attempt(2, "a", 200),  # failed, then redelivered by hand: done
        attempt(3, "b", 200), attempt(4, "b", 503),  # succeeded, a later attempt failed: still done
        attempt(5, "c", 500), attempt(6, "c", 0),  # failed twice: one redelivery
    ]
    chosen = select_for_redelivery(attempts, not_before=WINDOW_START)
    assert guids(chosen) == ["c"]
    assert chosen[0].id == 6  # the newest failed attempt is the one redelivered


def test_one_attempt_per_guid_oldest_first() -> None:
    attempts = [attempt(9, "z", 0), attempt(3, "y", 0), attempt(5, "z", 0), attempt(1, "x", 500)]
    chosen = select_for_redelivery(attempts, not_before=WINDOW_START)
    assert [(a.guid, a.id) for a in chosen] == [("x", 1), ("y", 3), ("z", 9)]


def test_deliveries_the_backend_recorded_are_skipped() -> None:
    attempts = [attempt(1, "a", 502), attempt(2, "b", 502)]
    assert guids(select_for_redelivery(attempts, known={"a"}, not_before=WINDOW_START)) == ["b"]


def test_deliveries_already_redelivered_are_skipped() -> None:
    attempts = [attempt(1, "a", 0), attempt(2, "b", 0), attempt(3, "a", 0)]
    assert guids(select_for_redelivery(attempts, redelivered={"a"}, not_before=WINDOW_START)) == ["b"]


def test_deliveries_outside_the_window_are_skipped() -> None:
    attempts = [
        attempt(1, "old", 0, age=timedelta(hours=73)),
        attempt(2, "edge", 0, age=timedelta(hours=72)),
        attempt(3, "new", 0, age=timedelta(hours=71)),
    ]
    assert guids(select_for_redelivery(attempts, not_before=WINDOW_START)) == ["edge", "new"]
    # A failed guid whose newest failed attempt is recent enough is kept even if an older one is not.
    attempts.append(attempt(4, "old", 0, age=timedelta(hours=1)))
    assert guids(select_failed(attempts, not_before=WINDOW_START)) == ["edge", "new", "old"]


def test_parse_attempt_reads_githubs_item_shape() -> None:
    item = {
        "id": 42, "guid": "0b989ba4-242f-11e5-81e1-c7b6966d2516", "delivered_at": "2019-06-03T00:57:16Z",
        "redelivery": False, "duration": 0.27, "status": "Unreachable", "status_code": 0,
        "event": "issues", "action": "opened", "installation_id": 123, "repository_id": 456,
    }
    parsed = parse_attempt(item)
    assert parsed == Attempt(
        id=42, guid="0b989ba4-242f-11e5-81e1-c7b6966d2516",
        delivered_at=datetime(2019, 6, 3, 0, 57, 16, tzinfo=UTC), status_code=0,
        redelivery=False, event="issues", action="opened",
    )
    assert parsed is not None
    assert not parsed.ok
    assert parse_attempt({"id": 1, "guid": "g"}) is None
    assert parse_attempt({"id": "x", "guid": "g", "delivered_at": "2019-06-03T00:57:16Z"}) is None
    no_code = parse_attempt({"id": 1, "guid": "g", "delivered_at": "2019-06-03T00:57:16Z", "status_code": None})
    assert no_code is not None
    assert no_code.status_code == 0


def test_next_link_finds_the_cursor_url() -> None:
    header = (
        '<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel="next", '
        '<https://api.github.com/app/hook/deliveries?per_page=100>; rel="first"'
    )
    assert next_link(header) == "https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967"
    assert next_link('<https://x/?page=1>; rel="prev"') is None
    assert next_link(None) is None
    assert next_link("") is None


# ---- the job against the in-process simulator, a real Redis and a fake backend ---------------------


class FakeBackend(BackendClient):
    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.asked: list[list[str]] = []

    async def known_deliveries(self, delivery_ids: list[str], timeout: float | None = 15) -> set[str]:
        self.asked.append(list(delivery_ids))
        return self.known & set(delivery_ids)


def _counts(metrics: Metrics, name: str, label: str) -> dict[str, float]:
    """A labelled counter's non-zero samples on the worker's registry."""
    return {
        s.labels[label]: s.value for family in metrics.registry.collect() for s in family.samples
        if s.name == name and s.value
    }


class FlakyReceiver:
    """Answers `status` to every delivery; records (guid, payload) of each."""

    def __init__(self) -> None:
        self.status = 503
        self.received: list[tuple[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers["X-GitHub-Delivery"], await request.json()))
        return web.Response(status=self.status)


class AppAuth:
    def app_jwt(self) -> str:
        return app_jwt(str(APP_ID), app_keys().private_pem)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_job_redelivers_each_failed_unrecorded_delivery_once(
    aiohttp_server: ServerFactory, redis: Redis
) -> None:
    receiver = FlakyReceiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hook = await aiohttp_server(hook_app)
    config = SimulatorConfig(
        app_id=APP_ID, app_public_key_pem=app_keys().public_pem, webhook_url=str(hook.make_url("/hook"))
    )
    sim = await aiohttp_server(create_simulator_app(config))
    base = str(sim.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        async def send(guid: str) -> int:
            body = {"event": "ping", "payload": {"zen": guid}, "delivery_id": guid}
            async with session.post(f"{base}/_sim/webhooks", json=body) as resp:
                return int((await resp.json())["status_code"])

        receiver.status = 200
        assert await send("ok-1") == 200
        receiver.status = 503
        failed = [f"failed-{n}" for n in range(130)]  # more than one page of 100
        for guid in failed:
            assert await send(guid) == 503
        assert await send("recorded") == 503  # the backend has it anyway

        backend = FakeBackend(known={"recorded", "ok-1"})
        metrics = Metrics(CollectorRegistry(), "worker")
        ctx = JobContext(
            backend, metrics,
            redelivery=RedeliveryContext(session, redis, AppAuth(), base, key_prefix=uuid.uuid4().hex),
        ).arq_ctx()
        receiver.status = 202
        receiver.received.clear()
        summary = await redeliver_failed(ctx)
        assert (summary.ran, summary.listed, summary.failed, summary.known) == (True, 132, 131, 1)
        assert (summary.redelivered, summary.errors) == (130, 0)
        assert sorted(len(batch) for batch in backend.asked) == [131]  # ok-1 is not even asked about
        assert _counts(metrics, "redelivery_deliveries_total", "stage") == {
            "seen": 132, "failed": 131, "known": 1, "redelivered": 130,
        }

        async def arrived() -> bool:
            return len(receiver.received) >= 130

        await eventually(arrived, timeout=10)
        await asyncio.sleep(0.1)
        assert sorted(guid for guid, _ in receiver.received) == sorted(failed)  # once each, same guid
        assert all(payload == {"zen": guid} for guid, payload in receiver.received)  # same payload
        async with session.get(f"{base}/_sim/deliveries") as resp:
            redeliveries = [d for d in await resp.json() if d["redelivery"]]
        assert sorted(d["guid"] for d in redeliveries) == sorted(failed)

        # The next run only looks at what is new (the redeliveries succeeded): nothing to do.
        again = await redeliver_failed(ctx)
        assert (again.listed, again.failed, again.redelivered) == (130, 0, 0)
        third = await redeliver_failed(ctx)
        assert (third.listed, third.redelivered) == (0, 0)
        assert _counts(metrics, "redelivery_runs_total", "result") == {"ok": 3}
        assert _counts(metrics, "redelivery_deliveries_total", "stage")["redelivered"] == 130
        assert metrics.registry.get_sample_value("redelivery_errors_total") == 0


async def test_job_skips_when_another_replica_holds_the_lock(redis: Redis) -> None:
    prefix = uuid.uuid4().hex
    metrics = Metrics(CollectorRegistry(), "worker")
    async with aiohttp.ClientSession() as session:
        ctx = JobContext(
            FakeBackend(set()), metrics,
            redelivery=RedeliveryContext(session, redis, AppAuth(), "http://127.0.0.1:9", key_prefix=prefix),
        ).arq_ctx()
        await redis.set(f"{prefix}:redelivery:lock", "someone-else", px=10_000)
        assert (await redeliver_failed(ctx)).ran is False
        assert _counts(metrics, "redelivery_runs_total", "result") == {"skipped": 1}
        await redis.delete(f"{prefix}:redelivery:lock")
        with pytest.raises(aiohttp.ClientError):  # GitHub unreachable: the run fails, and says so
            await redeliver_failed(ctx)
        assert _counts(metrics, "redelivery_runs_total", "result") == {"skipped": 1, "failed": 1}


async def test_backend_answers_which_deliveries_it_recorded(backend: SignedClient, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        assert await deliveries.begin(conn, "seen-pr", "pull_request", "opened", 1, 2)
        assert await deliveries.begin(conn, "seen-install", "installation", "created", 1, None)
        assert await deliveries.begin(conn, "seen-install", "installation_repositories", "added", 1, None)
    asked = ["unseen", "seen-pr", "seen-install", *(f"other-{n}" for n in range(150))]
    async with aiohttp.ClientSession() as session:
        client = BackendClient(session, str(backend.client.make_url("")), INTERNAL_SECRET)
        assert await client.known_deliveries(asked) == {"seen-pr", "seen-install"}  # two batches
        assert await client.known_deliveries([]) == set()
        unsigned = await session.post(
            str(backend.client.make_url(KNOWN_DELIVERIES_PATH)), json={"delivery_ids": ["seen-pr"]}
        )
        assert unsigned.status == 401
    too_many = await backend.post_json(
        KNOWN_DELIVERIES_PATH, {"delivery_ids": [str(n) for n in range(101)]}, expect=422
    )
    assert too_many["error"]
