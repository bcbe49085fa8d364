"""The one typed context every job of `prgate worker` gets, under one key of arq's `ctx`.

arq hands each job a dict (its own keys — `job_try`, `redis`, … — beside ours); ours is a single
`JobContext` under `JOB_CONTEXT`, checked once here instead of in every job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient
from bot_worker.metrics import Metrics
from bot_worker.providers.github.auth import AppJwtSource
from bot_worker.providers.github.deliveries import GITHUB_WINDOW, GitHubDeliveries
from bot_worker.providers.github.readers import GitHubReader

JOB_CONTEXT: Final = "prgate"


@dataclass(frozen=True, slots=True)
class RedeliveryContext:
    """What the redelivery job (`redelivery.py`) needs."""

    session: aiohttp.ClientSession
    redis: Redis
    app_auth: AppJwtSource
    api_url: str
    key_prefix: str  # Redis keys: "{key_prefix}:redelivery:..."
    lookback: timedelta = GITHUB_WINDOW
    deliveries: GitHubDeliveries = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "deliveries", GitHubDeliveries(self.session, self.api_url, self.app_auth))


@dataclass(frozen=True, slots=True)
class ReconcileContext:
    """What the reconcile job (`reconcile.py`) needs; `prgate reconcile` builds one too."""

    reader: GitHubReader
    redis: Redis
    key_prefix: str  # Redis keys: "{key_prefix}:reconcile:..."
    worker_id: str
    max_repositories: int = 200
    max_pr_pages: int = 10
    metrics: Metrics | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryContext:
    """What the Bitbucket re-discovery job (`bitbucket_discovery.py`) needs: the fleet lock's Redis."""

    redis: Redis
    key_prefix: str


@dataclass(frozen=True, slots=True)
class ConfigRefreshContext:
    """What the config-refresh job (`config_refresh.py`) needs."""

    redis: Redis
    key_prefix: str  # Redis keys: "{key_prefix}:config-refresh:..."
    batch_size: int = 20  # repositories per backend call
    max_batches: int = 10  # calls per run: a run is bounded, the next one continues


@dataclass(frozen=True, slots=True)
class JobContext:
    """What the jobs need; a job whose part is None refuses to run (TypeError)."""

    backend: BackendClient
    metrics: Metrics | None = None
    redelivery: RedeliveryContext | None = None
    reconcile: ReconcileContext | None = None
    bitbucket_discovery: DiscoveryContext | None = None
    config_refresh: ConfigRefreshContext | None = None

    def arq_ctx(self, **extra: Any) -> dict[str, Any]:
        """arq's `ctx` for a worker (or a direct call in a tool): this context under its key."""
        return {JOB_CONTEXT: self, **extra}


def job_context(ctx: Mapping[str, Any]) -> JobContext:
    """Our context out of arq's `ctx`."""
    jobs = ctx.get(JOB_CONTEXT)
    if not isinstance(jobs, JobContext):
        raise TypeError(f"ctx[{JOB_CONTEXT!r}] must be a JobContext, not {type(jobs).__name__}")
    return jobs


def job_try(ctx: Mapping[str, Any]) -> int:
    """arq's own try counter (1 on the first run)."""
    return int(ctx.get("job_try", 1))
