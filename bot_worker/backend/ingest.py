"""Hand one normalized delivery to the backend: what both the receiver (`webhooks/forward.py`) and
the parked-delivery job (`jobs/forward.py`) send, and how they read the backend's answer."""

from __future__ import annotations

import logging
from typing import Any, Final

import aiohttp
from pydantic import ValidationError

from bot_worker import metrics as m
from bot_worker.backend.client import BackendClient, BackendError
from bot_worker.metrics import Metrics
from shared_contracts.bitbucket import BitbucketCommandEvent, BitbucketPullRequestEvent, BitbucketPushEvent
from shared_contracts.events import (
    CommandEvent,
    ConfigPushEvent,
    IngestResponse,
    IngestStatus,
    InstallationSyncEvent,
    PullRequestEvent,
    RepositoryRenamedEvent,
)

log = logging.getLogger(__name__)

GitHubIngestEvent = PullRequestEvent | InstallationSyncEvent | CommandEvent | RepositoryRenamedEvent | ConfigPushEvent
BitbucketIngestEvent = BitbucketPullRequestEvent | BitbucketCommandEvent | BitbucketPushEvent
IngestEvent = GitHubIngestEvent | BitbucketIngestEvent
_BITBUCKET = (BitbucketPullRequestEvent, BitbucketCommandEvent, BitbucketPushEvent)

# What says "the backend is away" rather than "the backend answered".
UNAVAILABLE = (aiohttp.ClientError, TimeoutError, OSError, ValidationError)


def installation_id_of(event: IngestEvent) -> int | None:
    """The GitHub installation of an event; None for Bitbucket's (they name a workspace by its UUID,
    which only the backend maps to its tenant id)."""
    if isinstance(event, _BITBUCKET):
        return None
    return event.installation.id if isinstance(event, InstallationSyncEvent) else event.installation_id


def log_extra(event: IngestEvent) -> dict[str, Any]:
    if isinstance(event, _BITBUCKET):
        return {"delivery_id": event.delivery_id, "event": event.event, "workspace_uuid": event.workspace_uuid}
    return {"delivery_id": event.delivery_id, "event": event.event, "installation_id": installation_id_of(event)}


async def send(backend: BackendClient, event: IngestEvent, timeout: float) -> IngestResponse:
    if isinstance(event, BitbucketPullRequestEvent):
        return await backend.ingest_bitbucket_pull_request(event, timeout=timeout)
    if isinstance(event, BitbucketCommandEvent):
        return await backend.ingest_bitbucket_command(event, timeout=timeout)
    if isinstance(event, BitbucketPushEvent):
        return await backend.ingest_bitbucket_push(event, timeout=timeout)
    if isinstance(event, PullRequestEvent):
        return await backend.ingest_pull_request(event, timeout=timeout)
    if isinstance(event, CommandEvent):
        return await backend.ingest_command(event, timeout=timeout)
    if isinstance(event, ConfigPushEvent):
        return await backend.ingest_config_push(event, timeout=timeout)
    if isinstance(event, RepositoryRenamedEvent):
        return await backend.ingest_repository_renamed(event, timeout=timeout)
    return await backend.ingest_installation(event, timeout=timeout)


# The backend refusing *our* signature (a clock out of step, a key rotated on one side first) says
# nothing about the delivery: it is parked and replayed like an outage, never answered to GitHub.
AUTH_FAILURES: Final = frozenset({401, 403})


def refused(exc: BackendError) -> bool:
    """A 4xx (not 429, 401 or 403) is the backend's verdict on this delivery; the rest is an outage."""
    return 400 <= exc.status < 500 and not exc.retryable and exc.status not in AUTH_FAILURES


def auth_failed(exc: BackendError, extra: dict[str, Any], counters: Metrics | None, where: str) -> None:
    """Loud: until someone fixes the keys or the clock, nothing reaches the backend."""
    if counters is not None:
        counters.backend_auth_failures.labels(where).inc()
    log.error("backend refused our internal signature (%d): check PRGATE_RECEIVER_SECRETS / PRGATE_WORKER_SECRETS "
              "on both sides and the clocks (300 s window); the delivery stays queued", exc.status,
              extra={**extra, "status": exc.status})


def outcome(status: IngestStatus) -> str:
    """The `webhooks_forwarded_total` outcome label of an ingest answer."""
    return {
        IngestStatus.ACCEPTED: m.ACCEPTED, IngestStatus.DUPLICATE: m.DUPLICATE, IngestStatus.IGNORED: m.IGNORED,
        IngestStatus.PARKED: m.PARKED, IngestStatus.DROPPED: m.DROPPED,
    }[status]
