"""Repositories marked stale have their `.github/prgate.yml` read by the config-refresh call
(`POST /internal/v2/github/config/refresh`): installed with a file already there, inheriting from a
pushed organization file; GitHub away (backoff, counted), a repository no longer installed (skipped),
bad input and the wrong caller (4xx, nothing written). In-process backend, simulated GitHub."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from backend_api.app import create_app
from bot_worker.backend.client import BackendClient
from bot_worker.jobs.config_refresh import refresh_configs
from bot_worker.jobs.context import ConfigRefreshContext
from bot_worker.metrics import Metrics
from prgate.simulator.core.faults import FaultRule
from tests.conftest import INTERNAL_SECRET, RECEIVER_SECRET
from tests.integration.test_owner_api import owner_settings
from tests.support.github_sim import Simulator
from tests.support.ingest import send_installation
from tests.support.payloads import installation_payload, installation_repositories_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient

REFRESH = "/internal/v2/github/config/refresh"
CONFIG_PUSH = "/internal/v2/github/events/config-push"


@pytest.fixture
async def backend(db: asyncpg.Pool, database_url: str, aiohttp_client: Any, simulator: Simulator) -> SignedClient:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(owner_settings(database_url, simulator.url)))
    return SignedClient(client, INTERNAL_SECRET)


def commit(simulator: Simulator, repo: str, content: str) -> str:
    return simulator.state.commit_file(repo, ".github/prgate.yml", content.encode(), "config", "octo-org").sha


async def refresh(backend: SignedClient, n: int = 20) -> dict[str, Any]:
    answer: dict[str, Any] = await backend.post_json(REFRESH, {"max_repositories": n})
    return answer


async def reads(backend: SignedClient) -> dict[tuple[str, str], float]:
    resp = await backend.client.get("/metrics")
    text = await resp.text()
    found = re.findall(r'backend_config_file_reads_total\{result="(\w+)",trigger="(\w+)"\} ([0-9.]+)', text)
    return {(trigger, result): float(value) for result, trigger, value in found}


async def test_an_installation_created_with_files_present_is_read_without_any_push(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator,
) -> None:
    simulator.state.add_repository(1001, 5002, "octo-org/broken")
    commit(simulator, "octo-org/widgets", "warn_only: true\ndeadline_seconds: 600\n")
    commit(simulator, "octo-org/broken", "warn_onyl: true\n")
    await send_installation(backend, "installation", installation_payload(
        "created", repos=[(5001, "octo-org/widgets"), (5002, "octo-org/broken")]))
    async with db.acquire() as conn:
        marked = await conn.fetch("SELECT repo_id, reason FROM repo_config_stale ORDER BY repo_id")
    assert [(r["repo_id"], r["reason"]) for r in marked] == [(5001, "installation created"),
                                                             (5002, "installation created")]

    answer = await refresh(backend)
    assert sorted((i["repo_id"], i["result"]) for i in answer["refreshed"]) == [(5001, "valid"), (5002, "invalid")]
    assert answer["remaining"] == 0
    async with db.acquire() as conn:
        rows = {r["repo_id"]: r for r in await conn.fetch("SELECT * FROM repo_config_files")}
        assert await conn.fetchval("SELECT count(*) FROM repo_config_stale") == 0
    assert rows[5001]["config"] == {"warn_only": True, "deadline_seconds": 600}
    assert rows[5002]["config"] is None
    assert "warn_onyl: unknown key" in rows[5002]["last_error"]
    counted = await reads(backend)
    assert counted[("refresh", "valid")] == 1
    assert counted[("refresh", "invalid")] == 1
    # No commit of its own: no prgate/config status was enqueued for a refresh.
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM bot_actions WHERE action_type = 'SET_COMMIT_STATUS'") == 0

    before = await snapshot(db)
    again = await refresh(backend)  # nothing marked: nothing read, nothing written
    assert again == {"refreshed": [], "remaining": 0}
    assert await snapshot(db) == before


async def test_repositories_added_are_marked_and_github_away_backs_off_and_is_counted(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator,
) -> None:
    await send_installation(backend, "installation", installation_payload("created", repos=[]))
    simulator.state.add_repository(1001, 5003, "octo-org/later")
    commit(simulator, "octo-org/later", "gate_drafts: true\n")
    simulator.state.faults.add_rule(FaultRule(path_regex="/contents/", status=502, count=50))
    await send_installation(backend, "installation_repositories", installation_repositories_payload(
        "added", repos=[(5003, "octo-org/later")]))

    answer = await refresh(backend)
    assert answer == {"refreshed": [{"repo_id": 5003, "result": "unavailable"}], "remaining": 1}
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT attempts, last_error, next_attempt_at > now() AS later "
                                  "FROM repo_config_stale WHERE repo_id = 5003")
        assert await conn.fetchval("SELECT count(*) FROM repo_config_files") == 0  # nothing written
    assert row["attempts"] == 1
    assert row["later"]
    assert row["last_error"]
    assert (await reads(backend))[("refresh", "unavailable")] == 1
    # Backing off: not due, so not read again now.
    assert await refresh(backend) == {"refreshed": [], "remaining": 1}

    simulator.state.faults.reset()  # GitHub is back
    async with db.acquire() as conn:  # and the backoff is over
        await conn.execute("UPDATE repo_config_stale SET next_attempt_at = now()")
    assert (await refresh(backend))["refreshed"] == [{"repo_id": 5003, "result": "valid"}]
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT config FROM repo_config_files WHERE repo_id = 5003") == {"gate_drafts": True}


async def test_a_pushed_org_file_marks_its_inheritors_and_a_removed_repository_is_skipped(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator,
) -> None:
    simulator.state.add_repository(1001, 5010, "octo-org/.github")
    simulator.state.add_repository(1001, 5011, "octo-org/gone")
    await send_installation(backend, "installation", installation_payload(
        "created", repos=[(5001, "octo-org/widgets"), (5010, "octo-org/.github"), (5011, "octo-org/gone")]))
    assert len((await refresh(backend))["refreshed"]) == 3  # no file anywhere: all absent
    sha = commit(simulator, "octo-org/.github", "warn_only: true\n")
    push = {"delivery_id": str(uuid.uuid4()), "installation_id": 1001, "head_sha": sha,
            "repository": {"id": 5010, "full_name": "octo-org/.github"}}
    answer = await backend.post_json(CONFIG_PUSH, push)
    assert answer["status"] == "ACCEPTED", answer
    async with db.acquire() as conn:
        marked = await conn.fetch("SELECT repo_id, reason FROM repo_config_stale ORDER BY repo_id")
        # The push answered without reading the inheritors: the job does.
        assert await conn.fetchval("SELECT config FROM repo_config_files WHERE repo_id = 5001") is None
    assert [(r["repo_id"], r["reason"]) for r in marked] == [(5001, "inherits from octo-org/.github"),
                                                             (5011, "inherits from octo-org/.github")]
    await send_installation(backend, "installation_repositories", installation_repositories_payload(
        "removed", repos=[(5011, "octo-org/gone")]))

    answer = await refresh(backend, 1)  # bounded: one per call
    assert answer["remaining"] == 1
    assert len(answer["refreshed"]) == 1
    answer2 = await refresh(backend, 1)
    results = {i["repo_id"]: i["result"] for i in answer["refreshed"] + answer2["refreshed"]}
    assert results == {5001: "valid", 5011: "skipped"}
    assert answer2["remaining"] == 0
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT config FROM repo_config_files WHERE repo_id = 5001") == {"warn_only": True}
        assert await conn.fetchval("SELECT config FROM repo_config_files WHERE repo_id = 5011") is None


@pytest.mark.parametrize("body", [{"max_repositories": 0}, {"max_repositories": 101}, {"max_repositories": "x"},
                                  [1, 2], None])
async def test_bad_refresh_requests_are_refused_and_mark_nothing_read(
    backend: SignedClient, db: asyncpg.Pool, body: Any,
) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    before = await snapshot(db)
    resp = await backend.post(REFRESH, body)
    assert resp.status == 422, await resp.text()
    assert "error" in await resp.json()
    assert await snapshot(db) == before


async def test_only_workers_may_refresh(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    resp = await backend.post(REFRESH, {"max_repositories": 5}, sign_with=RECEIVER_SECRET)
    assert resp.status == 403, await resp.text()
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM repo_config_stale") == 1


# ---- the worker's job (bot_worker/jobs/config_refresh.py) against this backend and a real Redis ----


@pytest.fixture
async def job_parts(backend: SignedClient, redis_url: str) -> AsyncIterator[tuple[ConfigRefreshContext, BackendClient,
                                                                                 Metrics]]:
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        ctx = ConfigRefreshContext(redis, uuid.uuid4().hex, batch_size=1, max_batches=2)
        yield ctx, BackendClient(session, str(backend.client.make_url("")), INTERNAL_SECRET), Metrics(
            CollectorRegistry(), "worker")


async def _install_three(backend: SignedClient, simulator: Simulator) -> None:
    for repo_id, name in ((5021, "octo-org/a"), (5022, "octo-org/b"), (5023, "octo-org/c")):
        simulator.state.add_repository(1001, repo_id, name)
        commit(simulator, name, "warn_only: true\n")
    await send_installation(backend, "installation", installation_payload(
        "created", repos=[(5021, "octo-org/a"), (5022, "octo-org/b"), (5023, "octo-org/c")]))


async def test_a_job_run_is_bounded_and_the_next_one_continues(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator,
    job_parts: tuple[ConfigRefreshContext, BackendClient, Metrics],
) -> None:
    ctx, client, metrics = job_parts
    await _install_three(backend, simulator)
    first = await refresh_configs(ctx, client, metrics)
    assert (first.ran, first.calls, first.results, first.remaining) == (True, 2, {"valid": 2}, 1)
    second = await refresh_configs(ctx, client, metrics)
    assert (second.calls, second.results, second.remaining) == (1, {"valid": 1}, 0)
    third = await refresh_configs(ctx, client, metrics)  # nothing left: one empty call, then it stops
    assert (third.calls, third.results) == (1, {})
    async with db.acquire() as conn:
        configs = [r["config"] for r in await conn.fetch("SELECT config FROM repo_config_files ORDER BY repo_id")]
    assert configs == [{"warn_only": True}] * 3
    assert metrics.registry.get_sample_value("config_refresh_repositories_total", {"result": "valid"}) == 3
    assert metrics.registry.get_sample_value("config_refresh_runs_total", {"result": "ok"}) == 3


async def test_a_job_run_skips_while_another_replica_holds_the_lock_and_stops_when_github_is_away(
    backend: SignedClient, db: asyncpg.Pool, simulator: Simulator,
    job_parts: tuple[ConfigRefreshContext, BackendClient, Metrics],
) -> None:
    ctx, client, metrics = job_parts
    await _install_three(backend, simulator)
    await ctx.redis.set(f"{ctx.key_prefix}:config-refresh:lock", "another-replica", px=60_000)
    skipped = await refresh_configs(ctx, client, metrics)
    assert skipped.ran is False
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM repo_config_stale WHERE attempts = 0") == 3
    assert metrics.registry.get_sample_value("config_refresh_runs_total", {"result": "skipped"}) == 1
    await ctx.redis.delete(f"{ctx.key_prefix}:config-refresh:lock")

    simulator.state.faults.add_rule(FaultRule(path_regex="/contents/", status=502, count=100))
    away = await refresh_configs(ctx, client, metrics)
    # The call was full but GitHub answered none of it: no second call now (the backend backs off).
    assert (away.calls, away.results, away.remaining) == (1, {"unavailable": 1}, 3)
    assert metrics.registry.get_sample_value("config_refresh_runs_total", {"result": "errors"}) == 1
