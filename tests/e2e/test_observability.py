"""Observability of real processes: the worker's /readyz follows the backend, /metrics and JSON logs.

A backend process and a worker process on the test database and Redis; the backend is stopped and
started again under the worker. The worker logs its status port in its start-up line
(`metrics on :PORT`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot_worker.worker.main import ClaimHealth
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import Fleet, Proc, eventually, free_port, wait_http_ok

BASE_LOG_KEYS = {"ts", "level", "component", "logger", "msg"}


@dataclass
class Pair:
    fleet: Fleet
    backend_env: dict[str, str]
    backend_url: str
    backend: Proc
    worker: Proc

    def start_backend(self) -> None:
        self.backend = self.fleet.start(f"backend-{len(self.fleet.procs)}", "backend", self.backend_env)

    async def worker_url(self) -> str:
        async def started() -> bool:
            return "metrics on :" in self.worker.log() or not self.worker.alive()

        await eventually(started, timeout=30, interval=0.1)
        assert self.worker.alive(), self.worker.log()[-3000:]
        port = self.worker.log().split("metrics on :")[1].split('"')[0]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def pair(db: asyncpg.Pool, database_url: str, redis_url: str) -> AsyncIterator[Pair]:
    fleet = Fleet()
    port = free_port()
    backend_url = f"http://127.0.0.1:{port}"
    backend_env = {
        "DATABASE_URL": database_url, "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1",
        **INTERNAL_ENV, "SWEEP_INTERVAL_SECONDS": "1",
    }
    backend = fleet.start("backend", "backend", backend_env)
    try:
        await wait_http_ok(f"{backend_url}/readyz", backend)
        worker = fleet.start("worker", "worker", {
            "BACKEND_URL": backend_url, **INTERNAL_ENV, "REDIS_URL": redis_url,
            # No action is ever claimed here: GitHub is never asked.
            "GITHUB_API_URL": f"http://127.0.0.1:{free_port()}", "GITHUB_APP_ID": str(APP_ID),
            "GITHUB_PRIVATE_KEY": app_keys().private_pem, "WORKER_METRICS_PORT": "0", "BOT_HOST": "127.0.0.1",
            "ARQ_QUEUE_NAME": f"prgate-test-{uuid.uuid4().hex}", "WORKER_CLAIM_WAIT_SECONDS": "1",
            "WORKER_ID": "observed",
        })
        yield Pair(fleet, backend_env, backend_url, backend, worker)
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def readyz_becomes(url: str, status: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        code, body = await get(f"{url}/readyz")
        seen.update(body)
        return code == status

    await eventually(check, timeout=30, interval=0.1)
    return seen


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_worker_readyz_follows_the_backend(pair: Pair) -> None:
    url = await pair.worker_url()
    body = await readyz_becomes(url, 200)
    assert body == {"status": "ok", "checks": {"claim": "ok", "redis": "ok"}}

    assert pair.backend.terminate() == 0
    body = await readyz_becomes(url, 503)
    assert body["status"] == "unavailable"
    assert body["checks"] == {"claim": "last claim failed", "redis": "ok"}
    # Liveness is not readiness: the process itself is fine.
    assert (await get(f"{url}/healthz"))[0] == 200
    _, metrics = await get(f"{url}/metrics")
    assert sample(metrics, "claim_errors_total") >= 1
    # The worker's own families and the forwarding it shares with the receiver, never the receiver's alone.
    families = {f.name for f in text_string_to_metric_families(metrics)}
    assert {"claim_errors", "actions_executed", "forward_queue", "reconcile_runs"} <= families
    assert not families & {"webhooks_received", "webhook_signature_failures", "webhook_bodies_refused",
                           "forward_latency_seconds", "forward_group_deliveries"}

    pair.start_backend()
    await wait_http_ok(f"{pair.backend_url}/readyz", pair.backend)
    body = await readyz_becomes(url, 200)
    assert body["checks"] == {"claim": "ok", "redis": "ok"}


async def test_backend_metrics_count_the_workers_claims(pair: Pair) -> None:
    url = await pair.worker_url()
    await readyz_becomes(url, 200)

    async def claimed_twice() -> bool:
        _, text = await get(f"{pair.backend_url}/metrics")
        return sample(text, "backend_claim_requests_total", result="empty") >= 2

    await eventually(claimed_twice, timeout=30)
    _, text = await get(f"{pair.backend_url}/metrics")
    route = "/internal/v2/bot-actions/claim"
    assert sample(text, "backend_http_requests_total", route=route, method="POST", status="200") >= 2
    assert sample(text, "backend_http_request_duration_seconds_count", route=route, method="POST") >= 2
    assert sample(text, "backend_internal_signature_failures_total", reason="bad_signature") == 0
    assert sample(text, "backend_maintenance_run_duration_seconds_count") >= 1
    assert sample(text, "backend_outbox_actions", state="pending") == 0


async def test_every_log_line_is_json_with_the_common_fields(pair: Pair) -> None:
    url = await pair.worker_url()
    await readyz_becomes(url, 200)
    pair.backend.terminate()
    await readyz_becomes(url, 503)  # the worker logs its failed claims
    pair.worker.terminate()
    for proc in (pair.backend, pair.worker):
        lines = [line for line in proc.log().splitlines() if line.strip()]
        assert lines, proc.name
        entries = [json.loads(line) for line in lines]
        for entry in entries:
            assert set(entry) >= BASE_LOG_KEYS, entry
            assert list(entry)[:5] == ["ts", "level", "component", "logger", "msg"], entry
        assert {e["component"] for e in entries} == {f"prgate-{proc.name.split('-')[0]}"}
    worker_entries = [json.loads(line) for line in pair.worker.log().splitlines() if line.strip()]
    assert any(e["msg"] == "worker stopped" and e.get("worker_id") == "observed" for e in worker_entries)


# ---- the readiness rule itself, on a fake clock ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_claim_health_rules() -> None:
    clock = FakeClock()
    health = ClaimHealth(stale_after=30, clock=clock)
    assert health.check(saturated=False) == "no recent claim"  # nothing tried yet
    health.started()
    assert health.check(saturated=False) == "ok"  # the first claim is in flight
    health.finished(True)
    clock.now += 29
    assert health.check(saturated=False) == "ok"
    clock.now += 2
    assert health.check(saturated=False) == "no recent claim"
    assert health.check(saturated=True) == "ok"  # busy with what it claimed: not a fault
    health.started()
    health.finished(False)
    assert health.check(saturated=True) == "last claim failed"
    health.started()
    assert health.check(saturated=False) == "last claim failed"  # in flight after a failure: not yet
    health.finished(None)  # cancelled at shutdown: neither
    assert health.check(saturated=False) == "last claim failed"
    health.started()
    health.finished(True)
    assert health.check(saturated=False) == "ok"
