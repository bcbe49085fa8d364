"""Webhook test helpers: sign and post deliveries, per-test arq queues, stub backends, metric reads."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis, RedisSettings, create_pool
from prometheus_client.parser import text_string_to_metric_families

from backend_api.app import create_app
from bot_worker.settings import BotSettings
from bot_worker.webhooks.app import create_receiver_app
from prgate.simulator.github.webhooks import webhook_headers
from tests.conftest import INTERNAL_ENV, backend_settings
from tests.support.payloads import installation_payload

WEBHOOK_SECRET = "test-webhook-secret-" + "c" * 32
# The master the per-workspace Bitbucket hook secrets derive from (provider_clients/bitbucket/hook_secret.py).
BITBUCKET_MASTER = "test-bitbucket-master-" + "d" * 32
JOB_KEY_PREFIXES = ("arq:job:", "arq:retry:", "arq:in-progress:", "arq:result:")

def bot_settings(backend_url: str, redis_url: str, queue_name: str, **updates: Any) -> BotSettings:
    settings = BotSettings.model_validate(
        {
            "BACKEND_URL": backend_url,
            **INTERNAL_ENV,
            "REDIS_URL": redis_url,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BITBUCKET_WEBHOOK_SECRET": BITBUCKET_MASTER,
        }
    )
    return settings.model_copy(update={"queue_name": queue_name, **updates})


@dataclass(frozen=True)
class TestQueue:
    """A queue name of this test's own on the shared Redis, and a pool to look into it."""

    __test__ = False
    name: str
    redis: ArqRedis

    async def job_ids(self) -> set[str]:
        return {job_id.decode() for job_id in await self.redis.zrange(self.name, 0, -1)}


@asynccontextmanager
async def fresh_queue(redis_url: str) -> AsyncIterator[TestQueue]:
    """A unique arq queue; its jobs and keys are deleted afterwards so runs never collide."""
    name = f"prgate-test-{uuid.uuid4().hex}"
    redis = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=name)
    queue = TestQueue(name, redis)
    try:
        yield queue
    finally:
        ids = await queue.job_ids()
        keys = [prefix + job_id for job_id in ids for prefix in JOB_KEY_PREFIXES]
        await redis.delete(name, f"{name}:health-check", *keys)
        await redis.aclose()


@contextmanager
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound, never listening, so nobody else takes it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def stub_backend(status: int, body: dict[str, Any]) -> web.Application:
    """A backend that answers every ingest with `status` and `body` (for failure modes the real one lacks)."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/internal/v2/github/events/{kind}", answer)
    app.router.add_post("/internal/v2/bitbucket/events/{kind}", answer)
    return app


async def post_webhook(
    client: TestClient[Any, Any],
    event: str,
    payload: Any,
    delivery_id: str | None = None,
    *,
    secret: str = WEBHOOK_SECRET,
    raw: bytes | None = None,
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
) -> ClientResponse:
    """Sign and POST one delivery with GitHub's headers; `drop` / `replace` tamper with them."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = webhook_headers(secret, event, body, delivery_id or str(uuid.uuid4()))
    for name in drop:
        headers.pop(name)
    headers.update(replace or {})
    return await client.post("/webhooks/github", data=body, headers=headers)


async def metric(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    """The current value of one sample on the receiver's /metrics page (0 when absent)."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def fetch(db: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def installed_receiver(
    database_url: str, redis_url: str, queue: TestQueue, aiohttp_server: Any, aiohttp_client: Any
) -> TestClient[Any, Any]:
    """A receiver forwarding to a real backend on the test database, its installation already created."""
    backend = await aiohttp_server(create_app(backend_settings(database_url)))
    client: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url, queue.name))
    )
    resp = await post_webhook(client, "installation", installation_payload("created"))
    assert resp.status == 200, await resp.text()
    return client
