"""Forward a normalized delivery to the backend, or park it on the arq queue when the backend is away.

The receiver calls `Forwarder.forward` with a short timeout. When the backend is
unreachable, slow, or answers 5xx/429, the normalized model goes onto Redis as
an arq job (`FORWARD_JOB`, job id `forward:{event}:{delivery_id}`, so a
delivery that is already waiting is not queued twice) and the worker replays it
(`bot_worker/jobs/forward.py`). See docs/receiver.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job
from redis.exceptions import RedisError

from bot_worker import metrics as m
from bot_worker.backend.client import BackendClient, BackendError
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
from bot_worker.jobs.forward import FORWARD_JOB, encode, job_id
from bot_worker.metrics import Metrics
from bot_worker.webhooks.group import GroupSender, Sent, Unreachable
from shared_contracts.events import IngestResponse, PullRequestEvent

log = logging.getLogger(__name__)

ENQUEUE_TIMEOUT_SECONDS: Final = 2.0


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
                unavailable=UNAVAILABLE, on_group=metrics.forward_group_size.observe,
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
            self._metrics.webhooks_forwarded.labels(event.event, outcome(sent.status)).inc()
            log.info("delivery forwarded", extra={**extra, "outcome": sent.status.value})
            return Forwarded(sent)
        if isinstance(sent, BackendError) and refused(sent):
            self._metrics.webhooks_forwarded.labels(event.event, m.REJECTED).inc()
            log.warning("backend refused the delivery", extra={**extra, "status": sent.status})
            return Rejected(sent.status, sent.body)
        if isinstance(sent, BackendError) and sent.status in AUTH_FAILURES:
            auth_failed(sent, extra, self._metrics, "receiver")
        cause = f"backend answered {sent.status}" if isinstance(sent, BackendError) else sent.cause
        log.warning("backend unavailable (%s): queueing the delivery", cause, extra=extra)
        return await self._enqueue(event, extra)

    async def send_one(self, event: IngestEvent) -> Sent:
        """The single call: the backend's answer, its error, or why it gave none."""
        try:
            return await send(self._backend, event, self._timeout)
        except BackendError as exc:
            return exc
        except UNAVAILABLE as exc:
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
