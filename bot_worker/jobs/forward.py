"""The parked-delivery job: replay a delivery the receiver queued while the backend was away.

The receiver (`bot_worker/webhooks/forward.py`) enqueues `FORWARD_JOB` with `encode`'s
`(kind, JSON body)` under `job_id`; the worker replays it with exponential backoff. The backend's
dedup table makes a replay of a delivery it did process harmless (answer DUPLICATE).
See docs/receiver.md.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Final

from arq import Retry
from arq.connections import RedisSettings
from arq.worker import Worker, func

from bot_worker import metrics as m
from bot_worker.backend.client import BackendError
from bot_worker.backend.ingest import (
    AUTH_FAILURES,
    UNAVAILABLE,
    IngestEvent,
    auth_failed,
    log_extra,
    outcome,
    refused,
    send,
)
from bot_worker.jobs.codec import JobCodec
from bot_worker.jobs.context import job_context, job_try
from bot_worker.metrics import Metrics
from shared_contracts.bitbucket import BitbucketCommandEvent, BitbucketPullRequestEvent, BitbucketPushEvent
from shared_contracts.events import (
    CommandEvent,
    ConfigPushEvent,
    InstallationSyncEvent,
    PullRequestEvent,
    RepositoryRenamedEvent,
)

log = logging.getLogger(__name__)

# The job's `kind` argument: which backend endpoint (and model) the body belongs to.
KIND_PULL_REQUEST: Final = "pull_request"
KIND_INSTALLATION_SYNC: Final = "installation_sync"
KIND_COMMAND: Final = "command"
KIND_REPOSITORY_RENAMED: Final = "repository_renamed"
KIND_CONFIG_PUSH: Final = "config_push"
KIND_BITBUCKET_PULL_REQUEST: Final = "bitbucket_pull_request"
KIND_BITBUCKET_COMMAND: Final = "bitbucket_command"
KIND_BITBUCKET_PUSH: Final = "bitbucket_push"
_MODELS: dict[str, type[IngestEvent]] = {
    KIND_PULL_REQUEST: PullRequestEvent,
    KIND_INSTALLATION_SYNC: InstallationSyncEvent,
    KIND_COMMAND: CommandEvent,
    KIND_REPOSITORY_RENAMED: RepositoryRenamedEvent,
    KIND_CONFIG_PUSH: ConfigPushEvent,
    KIND_BITBUCKET_PULL_REQUEST: BitbucketPullRequestEvent,
    KIND_BITBUCKET_COMMAND: BitbucketCommandEvent,
    KIND_BITBUCKET_PUSH: BitbucketPushEvent,
}

BACKOFF_BASE_SECONDS: Final = 2.0
BACKOFF_CAP_SECONDS: Final = 300.0
# 2 + 4 + … + 256 then 300 s each: 20 tries keep retrying for about an hour.
FORWARD_MAX_TRIES: Final = 20
JOB_FORWARD_TIMEOUT_SECONDS: Final = 30.0


class PermanentForwardError(Exception):
    """The job cannot succeed by retrying (undecodable job, backend 4xx)."""


def job_id(event: str, delivery_id: str) -> str:
    return f"forward:{event}:{delivery_id}"


def encode(event: IngestEvent) -> tuple[str, str]:
    """(kind, JSON body) for the queue."""
    kind = next(k for k, model in _MODELS.items() if isinstance(event, model))
    return kind, event.model_dump_json()


def decode(kind: str, body: str) -> IngestEvent:
    """Re-validate a queued body; `ValueError` (incl. ValidationError) when it is not one."""
    model = _MODELS.get(kind)
    if model is None:
        raise ValueError(f"unknown forward job kind {kind!r}")
    return model.model_validate_json(body)


def backoff_seconds(job_try: int, jitter: float = 0.0) -> float:
    """Delay after try `job_try` fails: 2, 4, 8 … capped at 300 s; `jitter` in [0, 1) adds up to 25 %."""
    base: float = min(BACKOFF_BASE_SECONDS * 2.0 ** min(max(job_try - 1, 0), 32), BACKOFF_CAP_SECONDS)
    return base * (1 + 0.25 * jitter)


async def forward_delivery(ctx: dict[str, Any], kind: str, body: str) -> str:
    """arq job: replay one queued delivery to the backend; returns the backend's ingest status."""
    jobs = job_context(ctx)
    backend, counters = jobs.backend, jobs.metrics
    attempt = job_try(ctx)
    try:
        event = decode(kind, body)
    except ValueError:
        if counters:
            counters.forward_queue.labels(m.Q_FAILED).inc()
        log.error("forward job is not a valid delivery; dropping it", extra={"attempt": attempt})
        raise PermanentForwardError(f"undecodable {kind!r} forward job") from None
    extra = {**log_extra(event), "attempt": attempt}
    try:
        response = await send(backend, event, JOB_FORWARD_TIMEOUT_SECONDS)
    except BackendError as exc:
        if refused(exc):
            if counters:
                counters.forward_queue.labels(m.Q_FAILED).inc()
                counters.webhooks_forwarded.labels(event.event, m.REJECTED).inc()
            log.error("backend refused a queued delivery", extra={**extra, "status": exc.status})
            raise PermanentForwardError(f"backend answered {exc.status}") from None
        if exc.status in AUTH_FAILURES:
            auth_failed(exc, extra, counters, "worker")
        cause = f"backend answered {exc.status}"
    except UNAVAILABLE as exc:
        cause = type(exc).__name__
    else:
        if counters:
            counters.forward_queue.labels(m.Q_DELIVERED).inc()
            counters.webhooks_forwarded.labels(event.event, outcome(response.status)).inc()
        log.info("queued delivery forwarded", extra={**extra, "outcome": response.status.value})
        return response.status.value
    if attempt >= FORWARD_MAX_TRIES:
        if counters:
            counters.forward_queue.labels(m.Q_FAILED).inc()
        log.error(
            "backend still unavailable after %d tries: giving up; redeliver it from GitHub or Bitbucket",
            attempt, extra=extra,
        )
        raise PermanentForwardError(f"backend unavailable after {attempt} tries ({cause})")
    defer = backoff_seconds(attempt, jitter=random.random())
    if counters:
        counters.forward_queue.labels(m.Q_RETRIED).inc()
    log.warning("backend unavailable (%s): retrying in %.1f s", cause, defer, extra=extra)
    raise Retry(defer=defer)


# Register this with the worker (`Worker(functions=[FORWARD_JOB, ...])`). Results are not kept:
# once a job has finished, a redelivery may be queued again and the backend's dedup answers it.
FORWARD_JOB = func(
    forward_delivery,
    name="forward_delivery",
    max_tries=FORWARD_MAX_TRIES,
    timeout=JOB_FORWARD_TIMEOUT_SECONDS * 2,
    keep_result=0,
)


def forward_worker(
    redis_settings: RedisSettings, queue_name: str, ctx: dict[str, Any], metrics: Metrics | None, **options: Any
) -> Worker:
    """The arq worker of `prgate worker` for parked deliveries: JSON jobs only (jobs/codec.py), never pickle.

    `ctx` is `JobContext.arq_ctx()`; `options` go to `arq.Worker` as they are (burst, poll_delay, max_jobs …)."""
    on_refused = metrics.forward_queue.labels(m.Q_REFUSED).inc if metrics is not None else None
    codec = JobCodec(on_refused=on_refused)
    return Worker(
        functions=[FORWARD_JOB], redis_settings=redis_settings, queue_name=queue_name, handle_signals=False,
        ctx=ctx, job_serializer=codec.serialize, job_deserializer=codec.deserialize, **options,
    )
