"""One reconciliation run: read GitHub, send snapshots, let the backend repair (docs/reconcile.md).

1. `POST …/reconcile/runs` starts a run (the backend notes the time: what changes after it is left
   to the next run).
2. `GET /app/installations` (App JWT; or one installation with `--installation`); for each, its
   repositories with an installation token (none for a suspended one: GitHub gives it no token),
   sent as an `InstallationSnapshot`.
3. Up to `max_repositories` active repositories, in (installation, repository) order starting
   after the cursor the previous run left in Redis, have their open pull requests listed (at most
   `max_pr_pages` pages each) and sent as a `PullRequestSnapshot`.
4. `POST …/runs/{id}/finish` with the installation ids GitHub listed (so the backend can delete the
   ones it no longer lists) and the run's errors; the answer is the run's report.

An installation whose rate-limit budget falls below the reserve is left for the next run and
recorded as an error ("deferred"); so is anything GitHub or the backend refused. One run at a time
across the fleet: a Redis lock, extended while the run makes progress.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient, BackendError
from bot_worker.jobs.context import ReconcileContext, job_context
from bot_worker.jobs.lock import HeldLock, fleet_lock
from bot_worker.metrics import Metrics
from bot_worker.providers.github.auth import GitHubAuthError
from bot_worker.providers.github.readers import (
    GitHubError,
    GitHubReader,
    ListedInstallation,
    Listing,
    ReserveReached,
    TokenSource,
    parse_repositories,
)
from bot_worker.settings import BotSettings
from shared_contracts.events import InstallationInfo, Repository
from shared_contracts.reconcile import (
    InstallationSnapshot,
    PullRequestSnapshot,
    ReconcileError,
    ReconcileRunFinish,
    ReconcileRunReport,
    ReconcileRunStart,
    ReconcileStats,
    ReconcileTrigger,
    Repair,
)

log = logging.getLogger(__name__)

LOCK_TTL_MS: Final = 15 * 60 * 1000  # extended after every repository: only a stuck run loses it
CURSOR_TTL_SECONDS: Final = 7 * 24 * 3600
_FAILURES = (GitHubError, GitHubAuthError, BackendError, aiohttp.ClientError, TimeoutError)

RepoKey = tuple[int, int]  # (installation id, repository id)


# ---- pure ------------------------------------------------------------------------------------------


def window(keys: Sequence[RepoKey], after: RepoKey | None, limit: int) -> list[RepoKey]:
    """Up to `limit` of the sorted `keys`, starting after `after` and wrapping around."""
    ordered = sorted(keys)
    start = 0 if after is None else bisect.bisect_right(ordered, after)
    return (ordered[start:] + ordered[:start])[:limit]


def parse_cursor(raw: Any) -> RepoKey | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not isinstance(text, str):
        return None
    left, sep, right = text.partition(":")
    if not sep or not left.isdigit() or not right.isdigit():
        return None
    return int(left), int(right)


# ---- the run ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """What one run accumulates on the worker's side."""

    run_id: int
    repairs: list[Repair] = field(default_factory=list)
    errors: list[ReconcileError] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"installations": 0, "repositories": 0, "pull_requests": 0})
    deferred: set[int] = field(default_factory=set)  # installations left for the next run

    def error(self, message: str, installation_id: int | None = None, repo: str | None = None) -> None:
        self.errors.append(ReconcileError(installation_id=installation_id, repo_full_name=repo, message=message[:2000]))
        log.warning("reconcile: %s", message, extra={"installation_id": installation_id, "repo": repo})


def _key(ctx: ReconcileContext, name: str) -> str:
    return f"{ctx.key_prefix}:reconcile:{name}"


async def _extend_lock(lock: HeldLock | None) -> None:
    if lock is not None:
        await lock.extend()


async def _installation_snapshot(
    ctx: ReconcileContext, backend: BackendClient, run: _Run, info: InstallationInfo
) -> list[Repository]:
    """Send one installation's state; the repositories whose pull requests may be looked at."""
    repos: Listing[Repository] | None = None
    if info.suspended_at is None:
        try:
            repos = await ctx.reader.repositories(info.id)
        except ReserveReached as exc:
            run.deferred.add(info.id)
            run.error(str(exc), info.id)
            repos = parse_repositories(exc.partial, complete=False)  # what was read can still be added
        except _FAILURES as exc:
            run.error(f"listing repositories failed: {exc}", info.id)
    snapshot = InstallationSnapshot(
        run_id=run.run_id, installation=info,
        repositories=repos.items if repos is not None else None,
        repositories_complete=repos.complete if repos is not None else False,
    )
    answer = await backend.reconcile_installation(snapshot)
    run.repairs += answer.repairs
    run.stats["repositories"] += len(repos.items) if repos is not None else 0
    return repos.items if repos is not None and info.suspended_at is None else []


async def _pull_request_snapshot(
    ctx: ReconcileContext, backend: BackendClient, run: _Run, installation_id: int, repo: Repository,
    installation_created_at: datetime | None,
) -> None:
    if installation_id in run.deferred:
        return
    try:
        listing = await ctx.reader.open_pull_requests(installation_id, repo, ctx.max_pr_pages)
    except ReserveReached as exc:
        run.deferred.add(installation_id)
        run.error(str(exc), installation_id, repo.full_name)
        return
    except _FAILURES as exc:
        run.error(f"listing open pull requests failed: {exc}", installation_id, repo.full_name)
        return
    run.stats["pull_requests"] += len(listing.items)
    answer = await backend.reconcile_pull_requests(PullRequestSnapshot(
        run_id=run.run_id, installation_id=installation_id, repository=repo,
        pull_requests=listing.items, complete=listing.complete, installation_created_at=installation_created_at,
    ))
    run.repairs += answer.repairs


async def run_once(
    ctx: ReconcileContext,
    backend: BackendClient,
    *,
    trigger: ReconcileTrigger,
    installation_id: int | None = None,
    lock: HeldLock | None = None,
) -> ReconcileRunReport:
    """One pass; the caller holds the lock (`lock` lets the run extend it)."""
    started = await backend.reconcile_start(ReconcileRunStart(
        trigger=trigger, worker_id=ctx.worker_id, installation_id=installation_id,
    ))
    run = _Run(started.run_id)
    listed: list[int] | None = None
    installs: list[ListedInstallation] = []
    try:
        listing = await ctx.reader.installations(installation_id)
        installs = listing.items
        listed = [i.info.id for i in installs] if listing.complete else None
        if not listing.complete:
            run.error("the installation list could not be read completely: no installation is deleted this run")
    except ReserveReached as exc:
        run.error(f"listing installations: {exc}")
    except _FAILURES as exc:
        run.error(f"listing installations failed: {exc}")
    run.stats["installations"] = len(installs)

    candidates: dict[RepoKey, Repository] = {}
    created_at: dict[int, datetime | None] = {}
    for listed_installation in sorted(installs, key=lambda i: i.info.id):
        info = listed_installation.info
        created_at[info.id] = listed_installation.created_at
        try:
            for repo in await _installation_snapshot(ctx, backend, run, info):
                candidates[(info.id, repo.id)] = repo
        except _FAILURES as exc:
            run.error(f"reconciling the installation failed: {exc}", info.id)
        await _extend_lock(lock)

    scope = "all" if installation_id is None else f"installation:{installation_id}"
    cursor_key = _key(ctx, f"cursor:{scope}")
    chosen = window(list(candidates), parse_cursor(await ctx.redis.get(cursor_key)), ctx.max_repositories)
    for inst_id, repo_id in chosen:
        repo = candidates[(inst_id, repo_id)]
        try:
            await _pull_request_snapshot(ctx, backend, run, inst_id, repo, created_at.get(inst_id))
        except _FAILURES as exc:
            run.error(f"reconciling pull requests failed: {exc}", inst_id, repo.full_name)
        await _extend_lock(lock)
    if len(chosen) < len(candidates):
        last = chosen[-1]
        await ctx.redis.set(cursor_key, f"{last[0]}:{last[1]}", ex=CURSOR_TTL_SECONDS)
    else:
        await ctx.redis.delete(cursor_key)  # every repository was looked at: start from the first next time

    report = await backend.reconcile_finish(run.run_id, ReconcileRunFinish(
        listed_installation_ids=listed, errors=run.errors, stats=ReconcileStats(**run.stats),
    ))
    if ctx.metrics is not None:
        for repair in report.repairs:
            ctx.metrics.reconcile_repairs.labels(repair.kind.value).inc()
        ctx.metrics.reconcile_errors.inc(len(report.errors))
    log.info(
        "reconcile run %d: %d repairs, %d errors (%d installations, %d repositories, %d open pull requests)",
        report.run_id, len(report.repairs), len(report.errors), report.stats.installations,
        report.stats.repositories, report.stats.pull_requests,
    )
    return report


async def reconcile(
    ctx: ReconcileContext,
    backend: BackendClient,
    *,
    trigger: ReconcileTrigger,
    installation_id: int | None = None,
) -> ReconcileRunReport | None:
    """One run under the fleet-wide lock (`jobs/lock.py`); None when another replica holds it."""
    async with fleet_lock(ctx.redis, _key(ctx, "lock"), LOCK_TTL_MS) as held:
        if held is None:
            log.info("reconcile: another replica is running it")
            if ctx.metrics is not None:
                ctx.metrics.reconcile_runs.labels("skipped").inc()
            return None
        try:
            report = await run_once(ctx, backend, trigger=trigger, installation_id=installation_id, lock=held)
        except BaseException:
            if ctx.metrics is not None:
                ctx.metrics.reconcile_runs.labels("failed").inc()
            raise
    if ctx.metrics is not None:
        ctx.metrics.reconcile_runs.labels("errors" if report.errors else "ok").inc()
    return report


async def scheduled(ctx: Mapping[str, Any]) -> None:
    """One periodic run (bot_worker.jobs.periodic.every), with the worker's job context."""
    jobs = job_context(ctx)
    if jobs.reconcile is None:
        raise TypeError("the job context has no ReconcileContext")
    await reconcile(jobs.reconcile, jobs.backend, trigger="schedule")


def build_context(
    settings: BotSettings,
    session: aiohttp.ClientSession,
    redis: Redis,
    tokens: TokenSource,
    *,
    worker_id: str,
    metrics: Metrics | None = None,
) -> ReconcileContext:
    """The context the worker's periodic job and `prgate reconcile` share."""
    observe = None
    on_foreign_link = None
    if metrics is not None:
        def observe(method: str, status: int, seconds: float) -> None:
            metrics.provider_request_seconds.labels("github", method, str(status)).observe(seconds)
        on_foreign_link = metrics.foreign_next_links.labels("reconcile").inc
    reader = GitHubReader(session, settings.github_api_url, tokens, reserve=settings.reconcile_rate_limit_reserve,
                          observe=observe, on_foreign_link=on_foreign_link)
    return ReconcileContext(
        reader=reader, redis=redis, key_prefix=settings.queue_name, worker_id=worker_id,
        max_repositories=settings.reconcile_max_repositories, max_pr_pages=settings.reconcile_max_pr_pages,
        metrics=metrics,
    )
