"""Periodic re-discovery of Bitbucket workspaces' repositories (docs/bitbucket.md, "Tenancy").

The backend holds the workspaces' tokens, so the job asks it to list every ACTIVE workspace again
(`POST /internal/v2/bitbucket/rediscover`): repositories created since are added, deleted ones get
`removed_at`, a workspace Bitbucket refuses keeps its repositories and gets `last_error`. One run
at a time across the fleet (the fleet lock); every workspace's outcome is logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from bot_worker.backend.client import BackendClient
from bot_worker.jobs.context import DiscoveryContext, job_context
from bot_worker.jobs.lock import fleet_lock
from bot_worker.metrics import Metrics
from shared_contracts.bitbucket import BitbucketRediscoveryReport

log = logging.getLogger(__name__)

# The backend lists every workspace in one call; the lock outlives the longest call it allows.
LOCK_TTL_MS: Final = 15 * 60 * 1000
CALL_TIMEOUT_SECONDS: Final = 600.0


def lock_key(key_prefix: str) -> str:
    return f"{key_prefix}:bitbucket-discovery:lock"


async def rediscover(
    ctx: DiscoveryContext, backend: BackendClient, metrics: Metrics | None = None
) -> BitbucketRediscoveryReport | None:
    """One run; None when another replica holds the lock (skipped, counted)."""
    async with fleet_lock(ctx.redis, lock_key(ctx.key_prefix), LOCK_TTL_MS) as held:
        if held is None:
            log.info("bitbucket re-discovery skipped: another replica is running it")
            if metrics is not None:
                metrics.bitbucket_discovery.labels("skipped").inc()
            return None
        report = await backend.bitbucket_rediscover(timeout=CALL_TIMEOUT_SECONDS)
    for item in report.workspaces:
        if item.error is not None:
            log.warning("bitbucket re-discovery failed for a workspace: %s", item.error,
                        extra={"workspace": item.slug, "tenant_id": item.tenant_id})
        elif item.added or item.removed:
            log.info("bitbucket re-discovery: repositories changed", extra={
                "workspace": item.slug, "added": item.added, "removed": item.removed})
        if metrics is not None:
            metrics.bitbucket_discovery.labels("error" if item.error else "listed").inc()
            metrics.bitbucket_repositories_changed.labels("added").inc(len(item.added))
            metrics.bitbucket_repositories_changed.labels("removed").inc(len(item.removed))
    return report


async def scheduled(ctx: Mapping[str, Any]) -> None:
    """One periodic run (bot_worker.jobs.periodic.every), with the worker's job context."""
    jobs = job_context(ctx)
    if jobs.bitbucket_discovery is None:
        raise TypeError("the job context has no DiscoveryContext")
    await rediscover(jobs.bitbucket_discovery, jobs.backend, jobs.metrics)
