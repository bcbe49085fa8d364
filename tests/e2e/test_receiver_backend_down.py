"""The receiver never loses a delivery it answered 2xx: backend outages go through the arq queue.

Real backend (PostgreSQL), real Redis, a real in-process arq worker in burst mode.
"""

from __future__ import annotations

import asyncio
import pickle
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import Worker
from prometheus_client import CollectorRegistry

from backend_api.app import create_app
from bot_worker.backend.client import BackendClient
from bot_worker.jobs.codec import JobCodec
from bot_worker.jobs.context import JobContext
from bot_worker.jobs.forward import (
    FORWARD_JOB,
    FORWARD_MAX_TRIES,
    KIND_PULL_REQUEST,
    PermanentForwardError,
    backoff_seconds,
    encode,
    forward_delivery,
    forward_worker,
)
from bot_worker.metrics import Metrics
from bot_worker.providers.github.normalize import pull_request_event
from bot_worker.webhooks.app import create_receiver_app
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.webhooks import (
    TestQueue,
    bot_settings,
    closed_port,
    fetch,
    fresh_queue,
    metric,
    post_webhook,
    stub_backend,
)

# arq's Worker.close() calls redis' deprecated close(); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


async def drain(queue: TestQueue, redis_url: str, backend_url: str, metrics: Metrics) -> Worker:
    """Run an arq worker in burst mode over `queue` until it is empty, as `prgate worker` would."""
    async with aiohttp.ClientSession() as session:

        ctx = JobContext(BackendClient(session, backend_url, INTERNAL_SECRET), metrics).arq_ctx()
        worker = forward_worker(
            RedisSettings.from_dsn(redis_url), queue.name, ctx, metrics, burst=True, poll_delay=0.05, max_jobs=10,
        )
        try:
            await worker.async_run()
        finally:
            await worker.close()
    return worker


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_backend_down_while_100_deliveries_arrive_then_each_is_processed_once(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any,
) -> None:
    with closed_port() as port:
        pass  # a free port for the backend's two lives (before and after the outage)
    backend_url = f"http://127.0.0.1:{port}"
    backend = TestServer(create_app(backend_settings(database_url)), port=port)
    await backend.start_server()
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(backend_url, redis_url, queue.name))
    )
    resp = await post_webhook(receiver, "installation", installation_payload("created"))
    assert resp.status == 200, await resp.text()
    await backend.close()

    deliveries = [(str(uuid.uuid4()), pull_request_payload("opened", number=n)) for n in range(1, 101)]
    redelivered = deliveries[:10]  # GitHub sends these twice (same X-GitHub-Delivery)
    for delivery_id, payload in deliveries + redelivered:
        resp = await post_webhook(receiver, "pull_request", payload, delivery_id)
        assert resp.status == 202, await resp.text()
        assert await resp.json() == {"status": "queued", "delivery_id": delivery_id}

    assert await queue.job_ids() == {f"forward:pull_request:{d}" for d, _ in deliveries}
    assert await fetch(db, "SELECT * FROM webhook_deliveries WHERE event_name = 'pull_request'") == []
    assert await metric(receiver, "forward_queue_total", outcome="enqueued") == 100
    assert await metric(receiver, "forward_queue_total", outcome="already_queued") == 10
    assert await metric(receiver, "webhooks_forwarded_total", event="pull_request", outcome="queued") == 110
    ready = await receiver.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["redis"] == "ok"

    backend = TestServer(create_app(backend_settings(database_url)), port=port)
    await backend.start_server()
    try:
        worker_metrics = Metrics(CollectorRegistry(), "worker")
        worker = await drain(queue, redis_url, backend_url, worker_metrics)
    finally:
        await backend.close()

    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (100, 0, 0)
    assert await queue.job_ids() == set()
    assert sample(worker_metrics, "webhooks_forwarded_total", event="pull_request", outcome="accepted") == 100
    assert sample(worker_metrics, "forward_queue_total", outcome="delivered") == 100
    rows = await fetch(db, "SELECT delivery_id, status FROM webhook_deliveries WHERE event_name = 'pull_request'")
    assert sorted(r["delivery_id"] for r in rows) == sorted(d for d, _ in deliveries)
    assert {r["status"] for r in rows} == {"ACCEPTED"}
    challenges = await fetch(db, "SELECT pr_number, status FROM challenges ORDER BY pr_number")
    assert [(c["pr_number"], c["status"]) for c in challenges] == [(n, "PENDING") for n in range(1, 101)]
    actions = await fetch(db, "SELECT pr_number, action_type FROM bot_actions ORDER BY pr_number, action_id")
    assert [(a["pr_number"], a["action_type"]) for a in actions] == [
        (n, kind) for n in range(1, 101) for kind in ("UPSERT_PR_COMMENT", "SET_COMMIT_STATUS")
    ]


async def test_redis_and_backend_both_down_answers_503(
    redis_url: str, queue: TestQueue, aiohttp_client: Any, db: asyncpg.Pool
) -> None:
    with closed_port() as backend_port, closed_port() as redis_port:
        settings = bot_settings(f"http://127.0.0.1:{backend_port}", redis_url, queue.name)
        app = create_receiver_app(settings, redis_settings=RedisSettings(host="127.0.0.1", port=redis_port))
        receiver: TestClient[Any, Any] = await aiohttp_client(app)
        resp = await post_webhook(receiver, "pull_request", pull_request_payload("opened"))
        assert resp.status == 503
        body = await resp.json()
        assert body["error"] == "unavailable"
        assert await metric(receiver, "forward_queue_total", outcome="unavailable") == 1
        assert await metric(receiver, "webhooks_forwarded_total", event="pull_request", outcome="error") == 1
        ready = await receiver.get("/readyz")
        assert ready.status == 503
        checks = (await ready.json())["checks"]
        assert checks["redis"] != "ok"
        assert checks["backend"] != "ok"
        # Answers that need neither still work.
        resp = await post_webhook(receiver, "push", {"ref": "refs/heads/main"})
        assert resp.status == 202
    assert await queue.job_ids() == set()


async def test_hanging_backend_times_out_and_the_delivery_is_queued_then_processed(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({}, status=500)

    stuck = web.Application()
    stuck.router.add_post("/internal/v2/github/events/{kind}", hang)
    stuck_server = await aiohttp_server(stuck)
    settings = bot_settings(str(stuck_server.make_url("/")), redis_url, queue.name, forward_timeout_seconds=0.2)
    receiver: TestClient[Any, Any] = await aiohttp_client(create_receiver_app(settings))
    delivery_id = str(uuid.uuid4())
    resp = await post_webhook(receiver, "installation", installation_payload("created"), delivery_id)
    release.set()
    assert resp.status == 202
    assert await resp.json() == {"status": "queued", "delivery_id": delivery_id}
    assert await queue.job_ids() == {f"forward:installation:{delivery_id}"}

    real = await aiohttp_server(create_app(backend_settings(database_url)))
    worker = await drain(queue, redis_url, str(real.make_url("/")), Metrics(CollectorRegistry(), "worker"))
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    [row] = await fetch(db, "SELECT delivery_id, event_name FROM webhook_deliveries")
    assert (row["delivery_id"], row["event_name"]) == (delivery_id, "installation")


async def test_redelivery_after_a_failed_job_is_queued_again(
    redis_url: str, queue: TestQueue, aiohttp_client: Any
) -> None:
    """arq keeps a failed job's result, which would make enqueue_job refuse the id: a redelivery must still run."""
    delivery_id = str(uuid.uuid4())
    job_id = f"forward:pull_request:{delivery_id}"
    await queue.redis.set(f"arq:result:{job_id}", b"result of an earlier, failed attempt", ex=600)
    with closed_port() as port:
        receiver: TestClient[Any, Any] = await aiohttp_client(
            create_receiver_app(bot_settings(f"http://127.0.0.1:{port}", redis_url, queue.name))
        )
        resp = await post_webhook(receiver, "pull_request", pull_request_payload("opened"), delivery_id)
    assert resp.status == 202
    assert await queue.job_ids() == {job_id}
    assert await metric(receiver, "forward_queue_total", outcome="enqueued") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_backend_5xx_and_429_are_queued(
    redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any, status: int
) -> None:
    server = await aiohttp_server(stub_backend(status, {"error": "unavailable", "message": "try later"}))
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(server.make_url("/")), redis_url, queue.name))
    )
    delivery_id = str(uuid.uuid4())
    resp = await post_webhook(receiver, "pull_request", pull_request_payload("opened"), delivery_id)
    assert resp.status == 202
    assert await resp.json() == {"status": "queued", "delivery_id": delivery_id}
    assert await queue.job_ids() == {f"forward:pull_request:{delivery_id}"}


class _Planted:
    """Unpickling this creates `path`: the visible side effect of a job planted in Redis by an attacker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


async def test_a_pickled_job_in_redis_is_refused_unread_and_parked_deliveries_still_replay(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, tmp_path: Any,
) -> None:
    """Anyone who can write to Redis must not run code in the worker: jobs are JSON, a pickle is refused."""
    marker = tmp_path / "pwned"
    planted_id = "forward:pull_request:planted"
    planted = pickle.dumps({"t": 1, "f": "forward_delivery", "a": [_Planted(str(marker))], "k": {}, "et": 0})
    await queue.redis.set(f"arq:job:{planted_id}", planted, ex=600)
    await queue.redis.zadd(queue.name, {planted_id: 1})  # arq skips a job whose score is 0

    with closed_port() as port:
        pass
    backend_url = f"http://127.0.0.1:{port}"
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(backend_url, redis_url, queue.name))
    )
    backend = TestServer(create_app(backend_settings(database_url)), port=port)
    await backend.start_server()
    try:
        resp = await post_webhook(receiver, "installation", installation_payload("created"))
        assert resp.status == 200, await resp.text()
    finally:
        await backend.close()
    delivery_id = str(uuid.uuid4())
    resp = await post_webhook(receiver, "pull_request", pull_request_payload("opened"), delivery_id)
    assert resp.status == 202, await resp.text()
    raw = await queue.redis.get(f"arq:job:forward:pull_request:{delivery_id}")
    assert raw is not None
    assert raw.startswith(b"{")  # what the receiver parks is JSON, not a pickle

    backend = TestServer(create_app(backend_settings(database_url)), port=port)
    await backend.start_server()
    try:
        worker_metrics = Metrics(CollectorRegistry(), "worker")
        await drain(queue, redis_url, backend_url, worker_metrics)
    finally:
        await backend.close()
    assert not marker.exists()  # never unpickled
    assert sample(worker_metrics, "forward_queue_total", outcome="refused") == 1
    assert sample(worker_metrics, "forward_queue_total", outcome="delivered") == 1
    assert await queue.redis.exists(f"arq:job:{planted_id}") == 0  # dropped, not retried forever
    rows = await fetch(db, "SELECT delivery_id FROM webhook_deliveries WHERE event_name = 'pull_request'")
    assert [r["delivery_id"] for r in rows] == [delivery_id]


# ---- the job on its own ---------------------------------------------------------------------------


def _queued_pr() -> tuple[str, str]:
    return encode(pull_request_event(str(uuid.uuid4()), pull_request_payload("opened")))


async def test_job_retries_with_exponential_backoff_while_backend_is_down() -> None:
    kind, body = _queued_pr()
    metrics = Metrics(CollectorRegistry(), "worker")
    with closed_port() as port:
        async with aiohttp.ClientSession() as session:
            backend = BackendClient(session, f"http://127.0.0.1:{port}", INTERNAL_SECRET)
            for job_try, low in ((1, 2.0), (3, 8.0), (9, 300.0)):
                ctx = JobContext(backend, metrics).arq_ctx(job_try=job_try)
                with pytest.raises(Retry) as info:
                    await forward_delivery(ctx, kind, body)
                assert info.value.defer_score is not None
                assert low * 1000 <= info.value.defer_score <= low * 1250
            with pytest.raises(PermanentForwardError):
                await forward_delivery(
                    JobContext(backend, metrics).arq_ctx(job_try=FORWARD_MAX_TRIES), kind, body
                )
    assert sample(metrics, "forward_queue_total", outcome="retried") == 3
    assert sample(metrics, "forward_queue_total", outcome="failed") == 1


async def test_job_fails_permanently_on_backend_4xx_and_undecodable_jobs(aiohttp_server: Any) -> None:
    kind, body = _queued_pr()
    server = await aiohttp_server(stub_backend(422, {"error": "validation_error", "message": "no"}))
    async with aiohttp.ClientSession() as session:
        ctx = JobContext(BackendClient(session, str(server.make_url("/")), INTERNAL_SECRET)).arq_ctx(job_try=1)
        with pytest.raises(PermanentForwardError):
            await forward_delivery(ctx, kind, body)
        with pytest.raises(PermanentForwardError):
            await forward_delivery(ctx, "push", body)
        with pytest.raises(PermanentForwardError):
            await forward_delivery(ctx, KIND_PULL_REQUEST, '{"delivery_id": "x"}')


def test_backoff_doubles_from_2_s_and_caps_at_300_s() -> None:
    assert [backoff_seconds(n) for n in range(1, 12)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert backoff_seconds(1, jitter=0.999) < 2.5
    assert backoff_seconds(10_000) == 300
    assert FORWARD_JOB.name == "forward_delivery"
    assert FORWARD_JOB.max_tries == FORWARD_MAX_TRIES == 20


async def test_a_backend_refusing_our_signature_gets_the_delivery_queued_and_replayed_once_fixed(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any,
) -> None:
    """Before: a backend 401/403 (keys rotated on one side first, or a clock out of step) was passed to
    GitHub as the delivery's rejection and the delivery was lost; now it is parked like an outage."""
    # This backend knows other receiver and worker keys than the ones the bot signs with: 401.
    other_keys = {"PRGATE_RECEIVER_SECRETS": "test-other-receiver-" + "a1" * 24,
                  "PRGATE_WORKER_SECRETS": "test-other-worker-" + "b2" * 24}
    skewed = await aiohttp_server(create_app(backend_settings(database_url, **other_keys)))
    receiver: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(skewed.make_url("/")), redis_url, queue.name))
    )
    delivery_id = str(uuid.uuid4())
    resp = await post_webhook(receiver, "installation", installation_payload("created"), delivery_id)
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"status": "queued", "delivery_id": delivery_id}
    assert await metric(receiver, "forward_backend_auth_failures_total", where="receiver") == 1
    assert await metric(receiver, "webhooks_forwarded_total", event="installation", outcome="rejected") == 0
    assert await queue.job_ids() == {f"forward:installation:{delivery_id}"}
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == []

    # The worker's replay meets the same refusal: it retries later instead of dropping the job.
    job = await queue.redis.get(f"arq:job:forward:installation:{delivery_id}")
    assert job is not None
    kind, body = JobCodec().deserialize(job)["a"]  # as the worker decodes it
    metrics = Metrics(CollectorRegistry(), "worker")
    async with aiohttp.ClientSession() as session:
        ctx = JobContext(BackendClient(session, str(skewed.make_url("/")), INTERNAL_SECRET), metrics).arq_ctx(job_try=1)
        with pytest.raises(Retry):
            await forward_delivery(ctx, kind, body)
    assert sample(metrics, "forward_backend_auth_failures_total", where="worker") == 1
    assert sample(metrics, "forward_queue_total", outcome="failed") == 0

    # Keys agree again: the parked delivery arrives, once.
    fixed = await aiohttp_server(create_app(backend_settings(database_url)))
    worker = await drain(queue, redis_url, str(fixed.make_url("/")), Metrics(CollectorRegistry(), "worker"))
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    [row] = await fetch(db, "SELECT delivery_id, event_name FROM webhook_deliveries")
    assert (row["delivery_id"], row["event_name"]) == (delivery_id, "installation")
