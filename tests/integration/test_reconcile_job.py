"""The worker's reconciliation job against the in-process GitHub simulator, the real backend and a
real Redis: what it reads, its bounds and cursor, and how it keeps the rate-limit reserve."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import ReconcileContext
from bot_worker.jobs.reconcile import reconcile
from bot_worker.metrics import Metrics
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.readers import GitHubReader
from tests.conftest import INTERNAL_SECRET
from tests.support.github_sim import APP_ID, Simulator, app_keys
from tests.support.signed import SignedClient


@dataclass
class Job:
    ctx: ReconcileContext
    backend: BackendClient
    sim: Simulator

    def pr_listings(self) -> list[str]:
        """Paths (with query) of the open-PR listings GitHub has been asked for so far."""
        return [f"{r.path}?{r.query}" for r in self.sim.state.request_log if r.path.endswith("/pulls")]

    def exhaust(self, installation_id: int, keep: int) -> None:
        """Spend the installation's hourly budget down to `keep` requests (e.g. outbox actions did)."""
        limiter, now = self.sim.state.rate_limiter, self.sim.state.now()
        while limiter.peek(f"installation:{installation_id}", now).remaining > keep:
            limiter.consume(f"installation:{installation_id}", now)


@pytest.fixture
async def job(backend: SignedClient, simulator: Simulator, redis_url: str) -> AsyncIterator[Job]:
    async with aiohttp.ClientSession() as session, Redis.from_url(redis_url) as redis:
        tokens = InstallationTokens(session, simulator.url, str(APP_ID), app_keys().private_pem)
        reader = GitHubReader(session, simulator.url, tokens, reserve=0.2)
        ctx = ReconcileContext(reader=reader, redis=redis, key_prefix=uuid.uuid4().hex, worker_id="test",
                               metrics=Metrics(CollectorRegistry(), "worker"))
        yield Job(ctx, BackendClient(session, str(backend.client.make_url("")), INTERNAL_SECRET), simulator)


async def test_from_nothing_a_first_run_records_everything_and_a_second_repairs_nothing(
    job: Job, db: asyncpg.Pool
) -> None:
    report = await reconcile(job.ctx, job.backend, trigger="schedule")
    assert report is not None
    assert [(r.kind.value, r.installation_id, r.pr_number) for r in report.repairs] == [
        ("installation_created", 1001, None), ("installation_created", 2002, None),
        ("pull_request_evaluated", 1001, 7), ("pull_request_evaluated", 2002, 3),
    ]
    assert report.errors == []
    assert (report.stats.installations, report.stats.repositories, report.stats.pull_requests) == (2, 2, 2)
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM challenges WHERE status = 'PENDING'") == 2
    again = await reconcile(job.ctx, job.backend, trigger="schedule")
    assert again is not None
    assert again.repairs == []
    metrics = job.ctx.metrics
    assert metrics is not None
    assert metrics.registry.get_sample_value("reconcile_runs_total", {"result": "ok"}) == 2
    assert metrics.registry.get_sample_value("reconcile_repairs_total", {"kind": "pull_request_evaluated"}) == 2
    # What was asked: the open pull requests only.
    assert sorted(job.pr_listings()) == sorted([
        "/repositories/5001/pulls?state=open&per_page=100",  # by id: octo-org/widgets
        "/repositories/7001/pulls?state=open&per_page=100",  # acme/x
    ] * 2)


async def test_an_installation_below_the_reserve_is_deferred_not_crashed(job: Job, db: asyncpg.Pool) -> None:
    job.exhaust(2002, keep=4999 - 4000)  # 999 of 5000 left: below the 20% reserve after its next request
    report = await reconcile(job.ctx, job.backend, trigger="schedule")
    assert report is not None
    kinds = [(r.kind.value, r.installation_id) for r in report.repairs]
    # acme's repositories were read (one page) and recorded; its pull requests wait for the next run.
    assert ("installation_created", 2002) in kinds
    assert ("pull_request_evaluated", 2002) not in kinds
    assert ("pull_request_evaluated", 1001) in kinds
    [error] = report.errors
    assert error.installation_id == 2002
    assert error.repo_full_name == "acme/x"
    assert error.message.startswith("deferred to keep the rate-limit reserve: 998/5000 requests left until")
    assert all("/7001/" not in path for path in job.pr_listings())


async def test_an_exhausted_limit_defers_too(job: Job) -> None:
    job.exhaust(2002, keep=0)
    report = await reconcile(job.ctx, job.backend, trigger="cli")
    assert report is not None
    [error] = report.errors
    assert error.installation_id == 2002
    assert "deferred to keep the rate-limit reserve: 0/5000" in error.message
    # The installation is still recorded; its repositories were not read, so none is touched.
    assert [(r.kind.value, r.installation_id) for r in report.repairs if r.installation_id == 2002] == [
        ("installation_created", 2002)
    ]


async def test_repositories_per_run_are_bounded_and_the_cursor_goes_round(job: Job) -> None:
    state = job.sim.state
    state.add_repository(1001, 5002, "octo-org/gears")
    ctx = replace(job.ctx, max_repositories=2)
    seen: list[list[str]] = []
    for _ in range(3):
        before = len(job.pr_listings())
        assert await reconcile(ctx, job.backend, trigger="schedule") is not None
        seen.append([p.split("/pulls")[0].removeprefix("/repositories/") for p in job.pr_listings()[before:]])
    # (installation, repository id) order: (1001, 5001), (1001, 5002), (2002, 7001), then round again.
    assert seen == [["5001", "5002"], ["7001", "5001"], ["5002", "7001"]]


async def test_pages_are_bounded_and_a_partial_list_cancels_nothing(job: Job, db: asyncpg.Pool) -> None:
    state = job.sim.state
    for number in range(100, 201):  # 101 more open PRs on widgets: two pages with #7
        state.upsert_pull_request("octo-org/widgets", number, author_login=f"dev{number}", author_id=20_000 + number)
    first = await reconcile(replace(job.ctx, max_pr_pages=1), job.backend, trigger="schedule")
    assert first is not None
    evaluated = [r.pr_number for r in first.repairs if r.kind.value == "pull_request_evaluated" and
                 r.installation_id == 1001]
    assert len(evaluated) == 100  # one page
    # #7 was on the unread page (newest first); close one that was evaluated: with a partial list it
    # is not known to be closed, so its challenge stays.
    state.upsert_pull_request("octo-org/widgets", 200, state="closed")
    second = await reconcile(replace(job.ctx, max_pr_pages=1), job.backend, trigger="schedule")
    assert second is not None
    assert [r.kind.value for r in second.repairs if r.installation_id == 1001] == ["pull_request_evaluated"]
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "SELECT status FROM challenges WHERE repo_id = 5001 AND pr_number = 200") == "PENDING"
    # With every page read, the list is complete: #7 is evaluated at last, the closed one cancelled.
    third = await reconcile(job.ctx, job.backend, trigger="schedule")
    assert third is not None
    assert [(r.kind.value, r.pr_number) for r in third.repairs] == [
        ("pull_request_evaluated", 7), ("challenge_cancelled", 200),
    ]


async def test_one_run_at_a_time(job: Job) -> None:
    await job.ctx.redis.set(f"{job.ctx.key_prefix}:reconcile:lock", "another-replica", px=10_000)
    assert await reconcile(job.ctx, job.backend, trigger="cli") is None
    metrics = job.ctx.metrics
    assert metrics is not None
    assert metrics.registry.get_sample_value("reconcile_runs_total", {"result": "skipped"}) == 1
