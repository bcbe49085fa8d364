"""Have the backend read the config files of repositories marked stale (docs/configuration.md).

The backend marks a repository stale when it is added to an installation (its `.github/prgate.yml`
may be there already and no push will announce it), when its installation is unsuspended, and when
a file it inherits from (`_extends`, the organization's `.github`) is pushed; and a Bitbucket
repository (its `.prgate.yml`) when its workspace is connected, when a re-discovery adds it, or
when an event names it first (docs/bitbucket.md, "The config file"). The backend holds the
marks, the reads (with its own installation tokens) and the backoff of reads GitHub could not
answer; this job only paces them: under the fleet lock (one replica at a time), up to
`max_batches` calls of `batch_size` repositories each (`POST /internal/v2/github/config/refresh`),
stopping early once no mark is left or due. A run is bounded; the next one continues.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import ConfigRefreshContext, job_context
from bot_worker.jobs.lock import fleet_lock
from bot_worker.metrics import Metrics
from shared_contracts.repo_config import ConfigRefreshRequest

log = logging.getLogger(__name__)

LOCK_TTL_MS: Final = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class RefreshSummary:
    ran: bool  # False: another replica holds the lock
    calls: int = 0
    results: dict[str, int] = field(default_factory=dict)
    remaining: int = 0


def keep_going(read: int, asked: int, unavailable: int, remaining: int) -> bool:
    """Another call only if this one was full and marks are left (more may be due), and GitHub
    answered at least one read: when GitHub is away every read backs off, and asking again now
    would only spin."""
    return read >= asked and remaining > 0 and unavailable < read


async def refresh_configs(ctx: ConfigRefreshContext, backend: BackendClient, metrics: Metrics | None = None
                          ) -> RefreshSummary:
    async with fleet_lock(ctx.redis, f"{ctx.key_prefix}:config-refresh:lock", LOCK_TTL_MS) as held:
        if held is None:
            log.info("config refresh: another replica is running it")
            if metrics is not None:
                metrics.config_refresh_runs.labels("skipped").inc()
            return RefreshSummary(ran=False)
        counts: collections.Counter[str] = collections.Counter()
        calls, remaining = 0, 0
        try:
            while calls < ctx.max_batches:
                answer = await backend.refresh_configs(ConfigRefreshRequest(max_repositories=ctx.batch_size))
                calls += 1
                remaining = answer.remaining
                batch = collections.Counter(item.result for item in answer.refreshed)
                counts.update(batch)
                if metrics is not None:
                    for result, n in batch.items():
                        metrics.config_refresh_repositories.labels(result).inc(n)
                await held.extend()
                if not keep_going(len(answer.refreshed), ctx.batch_size, batch["unavailable"], remaining):
                    break
        except BaseException:
            if metrics is not None:
                metrics.config_refresh_runs.labels("failed").inc()
            raise
    if metrics is not None:
        metrics.config_refresh_runs.labels("errors" if counts["unavailable"] else "ok").inc()
    if counts:
        log.info("config refresh: %d repositories read in %d calls, %d still marked", sum(counts.values()), calls,
                 remaining, extra={"results": dict(counts)})
    return RefreshSummary(ran=True, calls=calls, results=dict(counts), remaining=remaining)


async def scheduled(ctx: Mapping[str, Any]) -> None:
    """One periodic run (bot_worker.jobs.periodic.every), with the worker's job context."""
    jobs = job_context(ctx)
    if jobs.config_refresh is None:
        raise TypeError("the job context has no ConfigRefreshContext")
    await refresh_configs(jobs.config_refresh, jobs.backend, jobs.metrics)
