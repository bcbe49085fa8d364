"""Forward a normalized delivery to the backend, or park it on the arq queue when the backend is away.

The receiver calls `Forwarder.forward` with a short timeout. When the backend is
unreachable, slow, or answers 5xx/429, the normalized model goes onto Redis as
an arq job (`FORWARD_JOB`, job id `forward:{event}:{delivery_id}`, so a
delivery that is already waiting is not queued twice) and the worker replays it
with exponential backoff. The backend's dedup table makes a replay of a
delivery it did process harmless (answer DUPLICATE). See docs/receiver.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job
from arq.worker import Worker, func
from pydantic import ValidationError
from redis.exceptions import RedisError

from bot_worker import metrics as m
from bot_worker.backend.client import BackendClient, BackendError
from bot_worker.jobs.codec import JobCodec
from bot_worker.metrics import Metrics
from bot_worker.webhooks.group import GroupSender, Sent, Unreachable
from shared_contracts.events import (
    CommandEvent,
    IngestResponse,
    IngestStatus,
    InstallationSyncEvent,
    PullRequestEvent,
    RepositoryRenamedEvent,
)

log = logging.getLogger(__name__)

IngestEvent = PullRequestEvent | InstallationSyncEvent | CommandEvent | RepositoryRenamedEvent

# The job's `kind` argument: which backend endpoint (and model) the body belongs to.
KIND_PULL_REQUEST: Final = "pull_request"
KIND_INSTALLATION_SYNC: Final = "installation_sync"
KIND_COMMAND: Final = "command"
KIND_REPOSITORY_RENAMED: Final = "repository_renamed"
_MODELS: dict[str, type[IngestEvent]] = {
    KIND_PULL_REQUEST: PullRequestEvent,
    KIND_INSTALLATION_SYNC: InstallationSyncEvent,
    KIND_COMMAND: CommandEvent,
    KIND_REPOSITORY_RENAMED: RepositoryRenamedEvent,
}

# What the worker must put in the arq ctx (on_startup) for `forward_delivery`.
CTX_BACKEND: Final = "backend"  # a BackendClient (required)
CTX_METRICS: Final = "metrics"  # a bot_worker.metrics.Metrics (optional)

BACKOFF_BASE_SECONDS: Final = 2.0
BACKOFF_CAP_SECONDS: Final = 300.0
# 2 + 4 + … + 256 then 300 s each: 20 tries keep retrying for about an hour.
FORWARD_MAX_TRIES: Final = 20
JOB_FORWARD_TIMEOUT_SECONDS: Final = 30.0
ENQUEUE_TIMEOUT_SECONDS: Final = 2.0

_UNAVAILABLE = (aiohttp.ClientError, TimeoutError, OSError, ValidationError)


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


def installation_id_of(event: IngestEvent) -> int:
    return event.installation.id if isinstance(event, InstallationSyncEvent) else event.installation_id


def log_extra(event: IngestEvent) -> dict[str, Any]:
    return {"delivery_id": event.delivery_id, "event": event.event, "installation_id": installation_id_of(event)}


async def send(backend: BackendClient, event: IngestEvent, timeout: float) -> IngestResponse:
    if isinstance(event, PullRequestEvent):
        return await backend.ingest_pull_request(event, timeout=timeout)
    if isinstance(event, CommandEvent):
        return await backend.ingest_command(event, timeout=timeout)
    if isinstance(event, RepositoryRenamedEvent):
        return await backend.ingest_repository_renamed(event, timeout=timeout)
    return await backend.ingest_installation(event, timeout=timeout)


def backoff_seconds(job_try: int, jitter: float = 0.0) -> float:
    """Delay after try `job_try` fails: 2, 4, 8 … capped at 300 s; `jitter` in [0, 1) adds up to 25 %."""
    base: float = min(BACKOFF_BASE_SECONDS * 2.0 ** min(max(job_try - 1, 0), 32), BACKOFF_CAP_SECONDS)
    return base * (1 + 0.25 * jitter)


# The backend refusing *our* signature (a clock out of step, a key rotated on one side first) says
# nothing about the delivery: it is parked and replayed like an outage, never answered to GitHub.
AUTH_FAILURES: Final = frozenset({401, 403})


def _refused(exc: BackendError) -> bool:
    """A 4xx (not 429, 401 or 403) is the backend's verdict on this delivery; the rest is an outage."""
    return 400 <= exc.status < 500 and not exc.retryable and exc.status not in AUTH_FAILURES


def _auth_failed(exc: BackendError, extra: dict[str, Any], counters: Metrics | None, where: str) -> None:
    """Loud: until someone fixes the keys or the clock, nothing reaches the backend."""
    if counters is not None:
        counters.backend_auth_failures.labels(where).inc()
    log.error("backend refused our internal signature (%d): check PRGATE_RECEIVER_SECRETS / PRGATE_WORKER_SECRETS "
              "on both sides and the clocks (300 s window); the delivery stays queued", exc.status,
              extra={**extra, "status": exc.status})


def _outcome(status: IngestStatus) -> str:
    return {
        IngestStatus.ACCEPTED: m.ACCEPTED, IngestStatus.DUPLICATE: m.DUPLICATE, IngestStatus.IGNORED: m.IGNORED,
        IngestStatus.PARKED: m.PARKED, IngestStatus.DROPPED: m.DROPPED,
    }[status]


# --- receiver side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forwarded:
    """The backend answered 200."""

    response: IngestResponse


@dataclass(frozen=True)
class Queued:
    """The backend was unavailable; the delivery waits on the queue (or already did)."""

    delivery_id: str
    already_queued: bool


@dataclass(frozen=True)
class Rejected:
    """The backend answered a 4xx other than 429: GitHub gets it as-is."""

    status: int
    body: str


@dataclass(frozen=True)
class Unavailable:
    """Neither the backend nor the queue took the delivery: GitHub must see a failure."""

    reason: str


ForwardResult = Forwarded | Queued | Rejected | Unavailable


class Forwarder:
    """The receiver's forward step: backend first, queue as the fallback."""

    def __init__(
        self,
        backend: BackendClient,
        queue: ArqRedis,
        *,
        queue_name: str,
        timeout: float,
        metrics: Metrics,
        enqueue_timeout: float = ENQUEUE_TIMEOUT_SECONDS,
        group_max: int = 1,
        group_lanes: int = 1,
    ) -> None:
        """`group_max` > 1 forwards `pull_request` deliveries in groups of up to that many
        (`group_lanes` calls in flight, bot_worker/webhooks/group.py); 1 sends each on its own call."""
        self._backend = backend
        self._queue = queue
        self._queue_name = queue_name
        self._timeout = timeout
        self._metrics = metrics
        self._enqueue_timeout = enqueue_timeout
        self._group: GroupSender | None = None
        if group_max > 1:
            self._group = GroupSender(
                backend, self.send_one, timeout=timeout, max_events=group_max, lanes=group_lanes,
                unavailable=_UNAVAILABLE, on_group=metrics.forward_group_size.observe,
            )

    async def aclose(self) -> None:
        """Wait for the group calls in flight to be answered."""
        if self._group is not None:
            await self._group.aclose()

    async def forward(self, event: IngestEvent) -> ForwardResult:
        extra = log_extra(event)
        started = time.perf_counter()
        if isinstance(event, PullRequestEvent) and self._group is not None:
            sent = await self._group.send(event)
        else:
            sent = await self.send_one(event)
        self._metrics.forward_latency.observe(time.perf_counter() - started)
        if isinstance(sent, IngestResponse):
            self._metrics.webhooks_forwarded.labels(event.event, _outcome(sent.status)).inc()
            log.info("delivery forwarded", extra={**extra, "outcome": sent.status.value})
            return Forwarded(sent)
        if isinstance(sent, BackendError) and _refused(sent):
            self._metrics.webhooks_forwarded.labels(event.event, m.REJECTED).inc()
            log.warning("backend refused the delivery", extra={**extra, "status": sent.status})
            return Rejected(sent.status, sent.body)
        if isinstance(sent, BackendError) and sent.status in AUTH_FAILURES:
            _auth_failed(sent, extra, self._metrics, "receiver")
        cause = f"backend answered {sent.status}" if isinstance(sent, BackendError) else sent.cause
        log.warning("backend unavailable (%s): queueing the delivery", cause, extra=extra)
        return await self._enqueue(event, extra)

    async def send_one(self, event: IngestEvent) -> Sent:
        """The single call: the backend's answer, its error, or why it gave none."""
        try:
            return await send(self._backend, event, self._timeout)
        except BackendError as exc:
            return exc
        except _UNAVAILABLE as exc:
            return Unreachable(type(exc).__name__)

    async def _enqueue(self, event: IngestEvent, extra: dict[str, Any]) -> ForwardResult:
        try:
            job = await asyncio.wait_for(self._enqueue_job(event), self._enqueue_timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._metrics.forward_queue.labels(m.Q_UNAVAILABLE).inc()
            self._metrics.webhooks_forwarded.labels(event.event, m.ERROR).inc()
            log.error("backend and queue both unavailable: refusing the delivery", extra=extra)
            return Unavailable(f"queue unavailable: {type(exc).__name__}")
        already = job is None
        self._metrics.forward_queue.labels(m.Q_ALREADY_QUEUED if already else m.Q_ENQUEUED).inc()
        self._metrics.webhooks_forwarded.labels(event.event, m.QUEUED).inc()
        log.info("delivery queued" if not already else "delivery already queued", extra=extra)
        return Queued(event.delivery_id, already_queued=already)

    async def _enqueue_job(self, event: IngestEvent) -> Job | None:
        """Enqueue unless a job for this delivery is waiting or running (then None)."""
        kind, body = encode(event)
        jid = job_id(event.event, event.delivery_id)
        job = await self._queue.enqueue_job(
            FORWARD_JOB.name, kind, body, _job_id=jid, _queue_name=self._queue_name
        )
        if job is None and not await self._queue.exists(job_key_prefix + jid):
            # Not waiting, yet refused: a finished job's kept result blocks the id (arq keeps a failed
            # job's result for the *worker's* keep_result, whatever FORWARD_JOB says). This one must run.
            await self._queue.delete(result_key_prefix + jid)
            job = await self._queue.enqueue_job(
                FORWARD_JOB.name, kind, body, _job_id=jid, _queue_name=self._queue_name
            )
        return job


FORWARDER = web.AppKey("forwarder", Forwarder)


# --- worker side ---------------------------------------------------------------------------------


async def forward_delivery(ctx: dict[str, Any], kind: str, body: str) -> str:
    """arq job: replay one queued delivery to the backend; returns the backend's ingest status."""
    backend = ctx[CTX_BACKEND]
    if not isinstance(backend, BackendClient):
        raise TypeError(f"ctx[{CTX_BACKEND!r}] must be a BackendClient, not {type(backend).__name__}")
    metrics = ctx.get(CTX_METRICS)
    counters = metrics if isinstance(metrics, Metrics) else None
    job_try = int(ctx.get("job_try", 1))
    try:
        event = decode(kind, body)
    except ValueError:
        if counters:
            counters.forward_queue.labels(m.Q_FAILED).inc()
        log.error("forward job is not a valid delivery; dropping it", extra={"attempt": job_try})
        raise PermanentForwardError(f"undecodable {kind!r} forward job") from None
    extra = {**log_extra(event), "attempt": job_try}
    try:
        response = await send(backend, event, JOB_FORWARD_TIMEOUT_SECONDS)
    except BackendError as exc:
        if _refused(exc):
            if counters:
                counters.forward_queue.labels(m.Q_FAILED).inc()
                counters.webhooks_forwarded.labels(event.event, m.REJECTED).inc()
            log.error("backend refused a queued delivery", extra={**extra, "status": exc.status})
            raise PermanentForwardError(f"backend answered {exc.status}") from None
        if exc.status in AUTH_FAILURES:
            _auth_failed(exc, extra, counters, "worker")
        cause = f"backend answered {exc.status}"
    except _UNAVAILABLE as exc:
        cause = type(exc).__name__
    else:
        if counters:
            counters.forward_queue.labels(m.Q_DELIVERED).inc()
            counters.webhooks_forwarded.labels(event.event, _outcome(response.status)).inc()
        log.info("queued delivery forwarded", extra={**extra, "outcome": response.status.value})
        return response.status.value
    if job_try >= FORWARD_MAX_TRIES:
        if counters:
            counters.forward_queue.labels(m.Q_FAILED).inc()
        log.error(
            "backend still unavailable after %d tries: giving up; redeliver it from GitHub", job_try, extra=extra
        )
        raise PermanentForwardError(f"backend unavailable after {job_try} tries ({cause})")
    defer = backoff_seconds(job_try, jitter=random.random())
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
    """The arq worker of `prgate worker` for parked deliveries: JSON jobs only (bot_worker/jobs/codec.py), never pickle.

    `options` go to `arq.Worker` as they are (burst, poll_delay, max_jobs, on_startup …)."""
    refused = metrics.forward_queue.labels(m.Q_REFUSED).inc if metrics is not None else None
    codec = JobCodec(on_refused=refused)
    return Worker(
        functions=[FORWARD_JOB], redis_settings=redis_settings, queue_name=queue_name, handle_signals=False,
        ctx=ctx, job_serializer=codec.serialize, job_deserializer=codec.deserialize, **options,
    )
