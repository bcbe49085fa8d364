"""Chaos: PR events flow through real processes while workers are SIGKILLed, backends restart and
the GitHub simulator injects 5xx, rate limits and latency spikes; every delivery arrives at least
twice, some ten times, out of order. Bitbucket PRs flow beside GitHub's through the same fleet:
opened in the simulator's Bitbucket (which delivers to the connected workspaces' hooks, retrying
on 5xx), each delivery resent at least once more, with 5xx and latency spikes on Bitbucket's API.
Then, from the simulator's and the database's own records: each PR got exactly one gate comment,
nothing was written twice and nothing was lost.

Short mode runs in the default suite. ``PRGATE_CHAOS_LONG=1`` adds the 10,000-event soak;
``PRGATE_CHAOS_RESTART_SERVICES=1`` lets it restart the shared PostgreSQL and Redis once each.
See docs/chaos.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from prgate.simulator import FaultConfig, FaultProfile, FaultRule
from prgate.simulator.github.webhooks import send_webhook
from tests.chaos.harness import (
    COMMENT_CREATE,
    ChaosStack,
    chaos_stack,
    fault_counts,
    restart_postgres,
    restart_redis,
    restart_services_allowed,
)
from tests.conftest import ADMIN_SECRET
from tests.support.bitbucket_sim import Bitbucket, connect
from tests.support.processes import eventually
from tests.support.webhooks import BITBUCKET_MASTER

LONG = os.environ.get("PRGATE_CHAOS_LONG") == "1"
BB_COMMENT_CREATE = r"^/bitbucket/2\.0/repositories/[^/]+/[^/]+/pullrequests/\d+/comments$"


@dataclass(frozen=True)
class Event:
    installation_id: int
    repo: str
    number: int
    login: str
    delivery_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    events: int
    installations: int
    repos_per_installation: int
    kill_every_seconds: float
    send_concurrency: int
    send_seconds: float  # the sends are spread over this long, so the chaos happens while they flow
    drain_timeout: float
    restart_services: bool
    bitbucket_events: int = 0  # Bitbucket PRs besides the `events` GitHub ones
    workspaces: int = 2


@dataclass
class BitbucketPr:
    repo: str  # workspace/slug
    login: str
    account_id: str
    pr_id: int = 0  # Bitbucket numbers it when it is opened, during the chaos


def chaos_faults(seed: int) -> FaultConfig:
    """~5% 5xx, some primary and a few secondary rate limits, latency spikes. GitHub's content
    throttle stays off: it is a rate, not a fault, and would only make the run longer."""
    return FaultConfig(seed=seed, content_throttle=False, default=FaultProfile(
        error_rate=0.05, error_statuses=[500, 502, 503],
        primary_rate_limit_rate=0.01, primary_reset_seconds=1,
        # Every secondary limit costs its action >= 60 s (the worker's floor): keep them rare.
        secondary_rate_limit_rate=0.002, secondary_retry_after_seconds=1,
        latency_spike_rate=0.03, latency_spike_ms=1500,
    ))


def bitbucket_faults(seed: int) -> FaultConfig:
    """Bitbucket's share of the chaos: 5xx and latency spikes. No rate limits: a 429 costs its action
    at least 60 s in the worker (Bitbucket's limits are hourly), which only makes a run longer; the
    429 path is covered by the worker's own tests."""
    return FaultConfig(seed=seed, default=FaultProfile(
        error_rate=0.05, error_statuses=[500, 502, 503], latency_spike_rate=0.03, latency_spike_ms=1500,
    ))


async def bitbucket_tenants(stack: ChaosStack, session: aiohttp.ClientSession, plan: Plan, cwd: Path,
                            count: int) -> list[BitbucketPr]:
    """Connect the workspaces through the real CLI (no faults yet) and register the PRs' authors."""
    bb = Bitbucket(session, stack.bitbucket_url)
    repos = []
    for i in range(plan.workspaces if count else 0):
        slug = f"bbtenant{i}"
        ws_uuid, token = await bb.workspace(slug, ["app"])
        await connect(bb, cwd, backend_url=stack.backend_urls[0], bot_url=stack.bot_url, master=BITBUCKET_MASTER,
                      slug=slug, ws_uuid=ws_uuid, token=token, admin_secret=ADMIN_SECRET)
        repos.append(f"{slug}/app")
    prs = [BitbucketPr(repos[k % len(repos)], f"bbdev{k}", f"557058:bbdev-{k}") for k in range(count)]
    sem = asyncio.Semaphore(16)

    async def register(pr: BitbucketPr) -> None:
        async with sem:
            await bb.user(pr.account_id, pr.login)

    await asyncio.gather(*(register(pr) for pr in prs))
    return prs


async def open_and_resend(stack: ChaosStack, session: aiohttp.ClientSession, pr: BitbucketPr,
                          copies: int) -> None:
    """Open the PR (the simulator delivers it, retrying twice on 5xx), resend it until answered 2xx
    if those ran out, then resend it `copies` more times: duplicates with new request UUIDs."""
    opened = await stack.sim(session, "POST", f"/bitbucket/_sim/repositories/{pr.repo}/pullrequests",
                             {"author": pr.account_id, "source_branch": pr.login})
    pr.pr_id = int(opened["id"])
    attempts = opened["deliveries"]
    assert attempts, opened  # the workspace's hook is subscribed
    stack.figures.deliveries_sent += len(attempts)
    stack.figures.redeliveries += len(attempts) - 1
    last = attempts[-1]["status"]
    if last is None or not 200 <= int(last) < 300:
        stack.figures.redeliveries += 1
        await stack.resend_bitbucket(session, attempts[0]["request_uuid"])
    for _ in range(copies):
        await asyncio.sleep(0.5)
        await stack.resend_bitbucket(session, attempts[0]["request_uuid"])


async def tenants(stack: ChaosStack, session: aiohttp.ClientSession, plan: Plan) -> dict[str, int]:
    """Install the tenants (no faults yet); returns repo full name -> owning installation."""
    owner: dict[str, int] = {}
    for i in range(plan.installations):
        inst = 700 + i
        repos = [(70_000 + i * 100 + r, f"tenant{i}/repo{r}") for r in range(plan.repos_per_installation)]
        await stack.install(session, inst, f"tenant{i}", repos)
        owner.update({name: inst for _, name in repos})
    return owner


async def open_prs(stack: ChaosStack, session: aiohttp.ClientSession, owner: dict[str, int],
                   count: int) -> list[Event]:
    repos = sorted(owner)
    sem = asyncio.Semaphore(16)

    async def one(k: int) -> Event:
        repo = repos[k % len(repos)]
        number, login, user_id = 1 + k // len(repos), f"dev{k}", 100_000 + k
        async with sem:
            payload = await stack.create_pr(session, owner[repo], repo, number, login, user_id)
        return Event(owner[repo], repo, number, login, str(uuid.uuid4()), payload)

    return list(await asyncio.gather(*(one(k) for k in range(count))))


def send_schedule(events: list[Event], rng: random.Random) -> list[Event]:
    """Every delivery twice, 1% ten times; shuffled so copies and PRs arrive out of order."""
    sends: list[Event] = []
    for event in events:
        sends += [event] * (10 if rng.random() < 0.01 else 2)
    rng.shuffle(sends)
    return sends


async def monkey(stack: ChaosStack, plan: Plan, rng: random.Random, progress: list[int], total: int,
                 stop: asyncio.Event) -> None:
    """Kill a random worker every few seconds (and replace it); restart each backend once, and in
    long mode (when allowed) PostgreSQL and Redis once, at fixed points of the send progress."""
    pending = [(0.3, "backend-a"), (0.6, "backend-b")]
    if plan.restart_services:
        pending += [(0.45, "postgres"), (0.75, "redis")]
    pending.sort()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=plan.kill_every_seconds * (0.5 + rng.random()))
        if stop.is_set() and not pending:
            return
        stack.kill_random_worker_and_replace(rng)
        # Anything not reached while sending happens once the sends are done.
        while pending and (stop.is_set() or progress[0] >= pending[0][0] * total):
            _, what = pending.pop(0)
            if what.startswith("backend"):
                await stack.restart_backend("ab".index(what[-1]))
            elif what == "postgres":
                await asyncio.to_thread(restart_postgres)
                stack.figures.restarts.append("postgres")
            else:
                await asyncio.to_thread(restart_redis)
                stack.figures.restarts.append("redis")


async def run_chaos(stack: ChaosStack, plan: Plan, seed: int, cwd: Path) -> None:
    rng = random.Random(seed)
    figures = stack.figures
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        owner = await tenants(stack, session, plan)
        events = await open_prs(stack, session, owner, plan.events)
        bb_prs = await bitbucket_tenants(stack, session, plan, cwd, plan.bitbucket_events)
        await stack.sim(session, "PUT", "/_sim/faults", chaos_faults(seed).model_dump(mode="json"))
        await stack.sim(session, "PUT", "/bitbucket/_sim/faults", bitbucket_faults(seed).model_dump(mode="json"))
        sends = send_schedule(events, rng)
        bb_copies = [9 if rng.random() < 0.01 else 1 for _ in bb_prs]
        figures.events = len(events) + len(bb_prs)
        figures.bitbucket_events = len(bb_prs)
        figures.duplicates_sent = len(sends) - len(events) + sum(bb_copies)
        progress, stop = [0], asyncio.Event()
        chaos = asyncio.create_task(monkey(stack, plan, rng, progress, len(sends), stop))
        sem = asyncio.Semaphore(plan.send_concurrency)
        loop = asyncio.get_running_loop()
        start, gap = loop.time(), plan.send_seconds / len(sends)

        async def deliver(index: int, event: Event) -> None:
            await asyncio.sleep(max(0.0, start + index * gap - loop.time()))
            async with sem:
                await stack.send(session, "pull_request", event.payload, event.delivery_id)
                progress[0] += 1

        bb_gap = plan.send_seconds / max(1, len(bb_prs))

        async def deliver_bitbucket(index: int, pr: BitbucketPr) -> None:
            await asyncio.sleep(max(0.0, start + index * bb_gap - loop.time()))
            async with sem:
                await open_and_resend(stack, session, pr, bb_copies[index])

        async def settled() -> bool:
            if chaos.done() and chaos.exception() is not None:
                raise AssertionError("chaos monkey failed") from chaos.exception()
            rows = await stack.count("SELECT count(*) FROM webhook_deliveries WHERE event_name = 'pull_request'")
            challenges = await stack.count("SELECT count(*) FROM challenges")
            return (rows >= len(events) and challenges >= len(events) + len(bb_prs)
                    and await stack.outbox_drained())

        try:
            await asyncio.gather(*(deliver(i, e) for i, e in enumerate(sends)),
                                 *(deliver_bitbucket(i, pr) for i, pr in enumerate(bb_prs)))
            # Workers keep dying while the outbox drains...
            await eventually(settled, timeout=plan.drain_timeout, interval=1)
        finally:
            stop.set()
            await chaos
        # ...and once they stop, whatever the last victim held must come back too.
        await eventually(settled, timeout=plan.drain_timeout, interval=1)
        log = await stack.requests(session)
        bb_log = await stack.requests(session, bitbucket=True)
        figures.faults = fault_counts(log)
        figures.faults.update({f"bitbucket:{k}": n for k, n in fault_counts(bb_log).items()})
        await assert_outcome(stack, session, events, owner, log, bb_prs, bb_log)


async def bitbucket_outcome(stack: ChaosStack, session: aiohttp.ClientSession, prs: list[BitbucketPr],
                            log: list[dict[str, Any]]) -> list[tuple[BitbucketPr, list[str]]]:
    """Count the Bitbucket PRs' lost and duplicated comments into the figures; each PR's comments."""
    figures = stack.figures
    bb = Bitbucket(session, stack.bitbucket_url)
    sem = asyncio.Semaphore(16)

    async def ours(pr: BitbucketPr) -> list[str]:
        async with sem:
            return await bb.ours(pr.repo, pr.pr_id)

    bodies = await asyncio.gather(*(ours(pr) for pr in prs))
    figures.lost += sum(1 for b in bodies if not b)
    figures.duplicates += sum(len(b) - 1 for b in bodies if len(b) > 1)
    creates = Counter(r["path"] for r in log if r["method"] == "POST" and r["status"] == 201
                      and re.match(BB_COMMENT_CREATE, r["path"]))
    figures.duplicates += sum(n - 1 for n in creates.values() if n > 1)
    assert set(creates) == {f"/bitbucket/2.0/repositories/{pr.repo}/pullrequests/{pr.pr_id}/comments" for pr in prs}
    # Every request for a workspace's resources was made with that workspace's token.
    crossed = [(r["credential"], r["path"]) for r in log
               if r["path"].split("/")[3:4] in (["repositories"], ["workspaces"])
               and r["credential"] != f"workspace:{r['path'].split('/')[4]}"]
    assert crossed == []
    return list(zip(prs, bodies, strict=True))


async def assert_outcome(stack: ChaosStack, session: aiohttp.ClientSession, events: list[Event],
                         owner: dict[str, int], log: list[dict[str, Any]], bb_prs: list[BitbucketPr],
                         bb_log: list[dict[str, Any]]) -> None:
    figures = stack.figures
    # The simulator: exactly one prgate comment per PR, and it is the gate text for its author.
    sem = asyncio.Semaphore(16)

    async def ours(event: Event) -> list[str]:
        async with sem:
            return await stack.comments(session, event.repo, event.number)

    bodies = await asyncio.gather(*(ours(e) for e in events))
    figures.lost = sum(1 for b in bodies if not b)
    figures.duplicates = sum(len(b) - 1 for b in bodies if len(b) > 1)
    # Exactly one successful comment create per PR reached GitHub.
    creates = Counter(r["path"] for r in log if r["method"] == "POST" and r["status"] == 201
                      and re.match(COMMENT_CREATE, r["path"]))
    expected_paths = {f"/repositories/{e.payload['repository']['id']}/issues/{e.number}/comments" for e in events}
    figures.duplicates += sum(n - 1 for n in creates.values() if n > 1)
    bb_bodies = await bitbucket_outcome(stack, session, bb_prs, bb_log)
    figures.failed_actions = await stack.count("SELECT count(*) FROM bot_actions WHERE status = 'FAILED'")
    figures.reclaimed_actions = await stack.count("SELECT count(*) FROM bot_actions WHERE attempt >= 2")
    print(figures.line())

    for event, found in zip(events, bodies, strict=True):
        assert len(found) == 1, (event.repo, event.number, found)
        assert f"Thanks for the pull request, @{event.login}!" in found[0], found[0]
        assert "**Please verify here:** " in found[0], found[0]
        assert "/verify/" in found[0], found[0]
    for pr, bb_found in bb_bodies:
        assert len(bb_found) == 1, (pr.repo, pr.pr_id, bb_found)
        assert f"Thanks for the pull request, @{pr.login}!" in bb_found[0], bb_found[0]
        assert "/verify/" in bb_found[0], bb_found[0]
    assert set(creates) == expected_paths
    assert all(n == 1 for n in creates.values()), [p for p, n in creates.items() if n > 1]
    assert figures.lost == 0
    assert figures.duplicates == 0

    # No request of one installation touched another installation's repository.
    owner_by_id = {str(e.payload["repository"]["id"]): owner[e.repo] for e in events}
    crossed = [(r["installation_id"], r["path"]) for r in log if r.get("installation_id")
               and r["path"].startswith("/repositories/") and owner_by_id.get(r["path"].split("/")[2])
               != r["installation_id"]]
    assert crossed == []

    # The database: one row per distinct delivery id, one challenge per PR, nothing stuck.
    rows = await stack.query(lambda c: c.fetch(
        "SELECT delivery_id, count(*) AS n FROM webhook_deliveries WHERE event_name = 'pull_request' GROUP BY 1"))
    assert {r["delivery_id"] for r in rows} == {e.delivery_id for e in events}
    assert all(r["n"] == 1 for r in rows)
    assert await stack.count("SELECT count(*) FROM challenges") == len(events) + len(bb_prs)
    assert await stack.count("SELECT count(*) FROM challenges WHERE provider = 'bitbucket'") == len(bb_prs)
    assert await stack.count(
        "SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED' AND lease_expires_at < now()") == 0
    statuses = await status_counts(stack)
    assert set(statuses) <= {"DONE", "FAILED"}, statuses
    assert await stack.count(
        "SELECT count(*) FROM bot_actions WHERE status = 'FAILED' AND coalesce(last_error, '') = ''") == 0
    assert figures.failed_actions == 0, await stack.query(lambda c: c.fetch(
        "SELECT action_type, attempt, last_error FROM bot_actions WHERE status = 'FAILED' LIMIT 10"))
    assert await stack.count(
        "SELECT count(*) FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'") == len(events) + len(bb_prs)


async def status_counts(stack: ChaosStack) -> dict[str, int]:
    rows = await stack.query(lambda c: c.fetch("SELECT status, count(*) AS n FROM bot_actions GROUP BY 1"))
    return {str(r["status"]): int(r["n"]) for r in rows}


async def test_chaos_short(db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path) -> None:
    plan = Plan(events=300, installations=3, repos_per_installation=2, kill_every_seconds=3,
                send_concurrency=12, send_seconds=25, drain_timeout=240, restart_services=False, bitbucket_events=60)
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=4) as stack:
        await run_chaos(stack, plan, seed=6, cwd=tmp_path)
        assert stack.figures.worker_kills >= 5
        assert stack.figures.restarts[:2] == ["backend-a", "backend-b"]


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long chaos soak: set PRGATE_CHAOS_LONG=1")
async def test_chaos_long(db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path) -> None:
    plan = Plan(events=10_000, installations=5, repos_per_installation=4, kill_every_seconds=4,
                send_concurrency=16, send_seconds=900, drain_timeout=3600, restart_services=restart_services_allowed(),
                bitbucket_events=2_000)
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=4) as stack:
        await run_chaos(stack, plan, seed=10_000, cwd=tmp_path)
        expected = ["backend-a", "backend-b"] + (["postgres", "redis"] if plan.restart_services else [])
        assert sorted(stack.figures.restarts) == sorted(expected)


# ---- focused, short ---------------------------------------------------------------------------


async def test_one_delivery_posted_1000_times_concurrently_is_handled_once(
    db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=1) as stack:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await stack.install(session, 801, "dup", [(80_100, "dup/repo")])
            payload = await stack.create_pr(session, 801, "dup/repo", 1, "twin", 4242)
            delivery_id = str(uuid.uuid4())
            url = f"{stack.bot_url}/webhooks/github"
            secret = stack.env["GITHUB_WEBHOOK_SECRET"]

            async def post() -> int:
                return await send_webhook(session, url, secret, "pull_request", payload, delivery_id,
                                          timeout_seconds=120)

            codes = Counter(await asyncio.gather(*(post() for _ in range(1000))))
            assert set(codes) <= {200, 201, 202}, codes
            await eventually(stack.outbox_drained, timeout=60)
            await eventually(lambda: _one_comment(stack, session, "dup/repo", 1), timeout=60)
            creates = await stack.requests(session, method="POST", path_regex=COMMENT_CREATE)
        assert [r["status"] for r in creates if r["status"] == 201] == [201]
    assert await stack.count("SELECT count(*) FROM webhook_deliveries WHERE delivery_id = $1", delivery_id) == 1
    assert await stack.count("SELECT count(*) FROM webhook_deliveries") == 2  # + the installation's
    assert await stack.count("SELECT count(*) FROM challenges") == 1
    assert await stack.count("SELECT count(*) FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT'") == 1


async def _one_comment(stack: ChaosStack, session: aiohttp.ClientSession, repo: str, number: int) -> bool:
    return len(await stack.comments(session, repo, number)) == 1


async def _send_prs(stack: ChaosStack, session: aiohttp.ClientSession, inst: int, repo: str,
                    count: int) -> list[Event]:
    events = []
    for n in range(1, count + 1):
        payload = await stack.create_pr(session, inst, repo, n, f"dev{n}", 200_000 + n)
        events.append(Event(inst, repo, n, f"dev{n}", str(uuid.uuid4()), payload))
    await asyncio.gather(*(stack.send(session, "pull_request", e.payload, e.delivery_id) for e in events))
    return events


async def test_sigkilled_workers_actions_are_claimed_again_and_complete(
    db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=0) as stack, \
            aiohttp.ClientSession() as session:
        await stack.install(session, 802, "kill", [(80_200, "kill/repo")])
        # GitHub is slow, so the victim is holding leases when it dies.
        await stack.sim(session, "PUT", "/_sim/faults", FaultConfig(
            content_throttle=False, default=FaultProfile(latency_ms=400)).model_dump(mode="json"))
        victim = stack.start_worker(WORKER_CONCURRENCY="30")
        victim_id = victim.name
        events = await _send_prs(stack, session, 802, "kill/repo", 40)

        async def victim_holds_leases() -> bool:
            return await stack.count("SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED' "
                                     "AND lease_owner = $1", victim_id) >= 5

        await eventually(victim_holds_leases, timeout=90, interval=0.05)
        stack.kill_worker(victim_id)
        orphaned = await stack.count(
            "SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED' AND lease_owner = $1", victim_id)
        assert orphaned >= 5
        rescuer = stack.start_worker(WORKER_CONCURRENCY="30")
        await eventually(stack.outbox_drained, timeout=120)
        for event in events:
            assert len(await stack.comments(session, event.repo, event.number)) == 1, event.number
        creates = await stack.requests(session, method="POST", path_regex=COMMENT_CREATE)
    assert sorted(Counter(r["path"] for r in creates if r["status"] == 201).values()) == [1] * len(events)
    statuses = await status_counts(stack)
    assert set(statuses) == {"DONE"}, statuses
    reclaimed = await stack.query(lambda c: c.fetch(
        "SELECT lease_owner, attempt FROM bot_actions WHERE attempt >= 2"))
    assert len(reclaimed) >= 1  # the orphaned leases expired and were taken over...
    assert {r["lease_owner"] for r in reclaimed} <= {rescuer.name, None}  # ...by the fresh worker


async def test_deterministically_failing_action_fails_and_starves_no_one(
    db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=2,
                           backend_extra={"ACTION_MAX_ATTEMPTS": "4"}) as stack, \
            aiohttp.ClientSession() as session:
        await stack.install(session, 803, "fail", [(80_300, "fail/repo")])
        await stack.sim(session, "PUT", "/_sim/faults", FaultConfig(
            content_throttle=False,
            rules=[FaultRule(method="POST", path_regex=r"^/repositories/80300/issues/7/comments$", count=100_000,
                             status=502, message="poisoned")],
        ).model_dump(mode="json"))
        events = await _send_prs(stack, session, 803, "fail/repo", 30)
        await eventually(stack.outbox_drained, timeout=120)
        for event in events:
            found = await stack.comments(session, event.repo, event.number)
            assert len(found) == (0 if event.number == 7 else 1), (event.number, found)
        attempts = await stack.requests(session, method="POST", path_regex=r"^/repositories/80300/issues/7/comments$")
    assert [r["status"] for r in attempts] == [502] * 4  # every attempt was made, then it stopped
    failed = await stack.query(lambda c: c.fetch(
        "SELECT pr_number, action_type, attempt, last_error FROM bot_actions WHERE status = 'FAILED'"))
    assert [(r["pr_number"], r["action_type"], r["attempt"]) for r in failed] == [(7, "UPSERT_PR_COMMENT", 4)]
    assert failed[0]["last_error"]
    assert "502" in failed[0]["last_error"]
    assert await stack.count("SELECT count(*) FROM bot_actions WHERE status <> 'DONE'") == 1


async def test_attempts_that_outlast_their_lease_write_one_comment_per_pr(
    db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """docs/security.md, "A run that outlives its lease keeps writing": every GitHub request takes 2.5 s, so a gate
    comment (token, listing, create)
    or a close (listing, edit, read, close) takes longer than the 8 s lease. The lease is extended
    while an attempt runs, and no write starts that the lease cannot cover: one comment per PR,
    nothing FAILED, and only the killed worker's actions were ever run twice."""
    lease = {"WORKER_LEASE_SECONDS": "8", "PROVIDER_TIMEOUT_SECONDS": "3", "WORKER_REPORT_MARGIN_SECONDS": "1",
             "WORKER_CONCURRENCY": "4"}  # few slots: the leases spread over every worker
    async with chaos_stack(db, database_url, redis_url, tmp_path, workers=3, worker_extra=lease) as stack, \
            aiohttp.ClientSession() as session:
        await stack.install(session, 804, "slow", [(80_400, "slow/repo")])
        await stack.sim(session, "PUT", "/_sim/faults", FaultConfig(
            content_throttle=False, default=FaultProfile(latency_ms=2500)).model_dump(mode="json"))
        events = await _send_prs(stack, session, 804, "slow/repo", 12)

        async def a_worker_holds_leases() -> bool:
            return await stack.count("SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED'") >= 3

        await eventually(a_worker_holds_leases, timeout=90, interval=0.05)
        victim = await stack.query(lambda c: c.fetchval(
            "SELECT lease_owner FROM bot_actions WHERE status = 'CLAIMED' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"))
        victims_actions = {int(r["action_id"]) for r in await stack.query(lambda c: c.fetch(
            "SELECT action_id FROM bot_actions WHERE status = 'CLAIMED' AND lease_owner = $1", victim))}
        stack.kill_worker(str(victim))
        stack.start_worker()
        await eventually(stack.outbox_drained, timeout=240)
        for event in events:
            assert len(await stack.comments(session, event.repo, event.number)) == 1, event.number
        creates = await stack.requests(session, method="POST", path_regex=COMMENT_CREATE)
    assert sorted(Counter(r["path"] for r in creates if r["status"] == 201).values()) == [1] * len(events)
    assert set(await status_counts(stack)) == {"DONE"}
    rerun = {int(r["action_id"]) for r in await stack.query(lambda c: c.fetch(
        "SELECT action_id FROM bot_actions WHERE attempt >= 2"))}
    # Without extension, every attempt longer than the lease would have been taken over.
    assert rerun <= victims_actions, sorted(rerun - victims_actions)
