"""Prometheus metrics of the backend, on a registry the app owns (docs/operations.md, Metrics).

Nothing here registers on prometheus_client's global default registry: `create_app` builds one
`CollectorRegistry` per app, so two apps in one process (tests) never share a counter.

Where the numbers come from:

- `metrics_middleware` (outermost) times every request and labels it with the matched route's
  canonical path (`/internal/v2/bot-actions/{action_id}/result`, never the raw path with its id).
  After the handler answered, it reads the answer (and, for results, the request) of the few
  handlers whose outcome is a metric: ingests, claims, results, owner-API exemptions and the
  verification form. Handlers stay unaware of metrics.
- `internal_auth_middleware` counts signature failures by reason (`count_signature_failure`).
- `/metrics` samples the outbox gauges from PostgreSQL (one query) just before rendering.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from aiohttp.payload import Payload
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from pydantic import BaseModel, ValidationError

from backend_api.http import handlers, owner
from backend_api.http.errors import Handler
from backend_api.keys import DB_POOL, ENQUEUED_TYPES, REPLAYED
from backend_api.store import metrics as store
from backend_api.store.db import DATABASE_UNAVAILABLE
from backend_api.web import verify
from shared_contracts.actions import (
    BatchResultRequest,
    BatchResultResponse,
    ClaimResponse,
    ResultRequest,
    ResultResponse,
)
from shared_contracts.events import IngestBatchResponse, IngestResponse, IngestStatus
from shared_contracts.owner import ExemptResponse

log = logging.getLogger(__name__)

# Label value of `route` when no route matched (404/405): raw paths never become labels.
UNMATCHED = "unmatched"
# Label value of `status` when the client went away before the handler answered (nginx's 499).
CLIENT_CLOSED = "499"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# The claim route long-polls for up to 30 s: the buckets reach past it.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0)
_MAINTENANCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SAMPLE_TIMEOUT_SECONDS = 2.0

# `reason` label of backend_internal_signature_failures_total, from shared_contracts.signing's messages.
SIGNATURE_REASONS = {
    "missing signature headers": "missing_headers",
    "malformed timestamp": "malformed",
    "malformed nonce": "malformed",
    "malformed signature": "malformed",
    "timestamp outside the allowed window": "stale_timestamp",
    "bad signature": "bad_signature",
    "no internal secret configured": "not_configured",
    "replayed nonce": "replayed_nonce",
    "key out of scope": "out_of_scope",
}


class BackendMetrics:
    """Every metric the backend exposes, bound to one `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        # HTTP, every route.
        self.http_requests = Counter(
            "backend_http_requests_total", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=registry,
        )
        self.http_latency = Histogram(
            "backend_http_request_duration_seconds", "Time to answer an HTTP request (claims include the long-poll)",
            ["route", "method"], buckets=_HTTP_BUCKETS, registry=registry,
        )
        self.client_hangups = Counter(
            "backend_client_hangups_total",
            "Requests whose client closed the connection before the answer (logged at INFO, not as errors), "
            "by where it was noticed: request (reading the body), page, cancelled",
            ["where"], registry=registry,
        )
        self.signature_failures = Counter(
            "backend_internal_signature_failures_total",
            "Requests to /internal/ refused with 401, by reason", ["reason"], registry=registry,
        )

        # Ingest and outbox.
        self.webhook_ingests = Counter(
            "backend_webhook_ingests_total", "Deliveries ingested (answered 200), by event, status and decision",
            ["event", "status", "decision"], registry=registry,
        )
        self.parked_events = Counter(
            "backend_parked_events_total",
            "Events for an installation not known yet (events/parking.py): parked, replayed once it was "
            "known, dropped (parking full) or expired (it never came)",
            ["outcome"], registry=registry,
        )
        for outcome in ("parked", "replayed", "dropped", "expired"):
            self.parked_events.labels(outcome)
        self.ingest_batch_size = Histogram(
            "backend_ingest_batch_deliveries", "pull_request deliveries written per transaction (events/batcher.py)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500), registry=registry,
        )
        self.ingest_batch_fallbacks = Counter(
            "backend_ingest_batch_fallbacks_total",
            "Batches of deliveries that failed and were written again one delivery per transaction",
            registry=registry,
        )
        self.actions_enqueued = Counter(
            "backend_actions_enqueued_total",
            "Outbox actions enqueued by a webhook/command ingest or an owner-API exemption, by type",
            ["action_type", "source"], registry=registry,
        )
        self.claim_requests = Counter(
            "backend_claim_requests_total", "Claim calls by result (actions / empty / error)",
            ["result"], registry=registry,
        )
        self.actions_handed_out = Counter(
            "backend_actions_handed_out_total", "Actions leased to workers by claim calls, by type",
            ["action_type"], registry=registry,
        )
        self.action_results = Counter(
            "backend_action_results_total",
            "Results reported by workers, by outcome and the resulting status (or stale_lease / unknown_action)",
            ["outcome", "status"], registry=registry,
        )
        self.outbox_actions = Gauge(
            "backend_outbox_actions", "Outbox actions by state (pending, pending_due, leased, failed), at scrape",
            ["state"], registry=registry,
        )
        self.outbox_oldest_pending_age = Gauge(
            "backend_outbox_oldest_pending_age_seconds", "Age of the oldest PENDING action (0 when none), at scrape",
            registry=registry,
        )

        # Challenges and maintenance.
        self.challenges_timed_out = Counter(
            "backend_challenges_timed_out_total", "Challenges resolved by the deadline sweeper of this replica",
            registry=registry,
        )
        self.verifications = Counter(
            "backend_verifications_total", "Successful submissions of the verification form", registry=registry,
        )
        self.lease_expiry_failures = Counter(
            "backend_lease_expiry_failures_total",
            "Actions made FAILED by maintenance because their lease expired on the final attempt",
            registry=registry,
        )
        self.maintenance_duration = Histogram(
            "backend_maintenance_run_duration_seconds", "Duration of one maintenance run (sweep + housekeeping)",
            buckets=_MAINTENANCE_BUCKETS, registry=registry,
        )
        self.maintenance_errors = Counter(
            "backend_maintenance_errors_total", "Maintenance runs that failed (database errors)", registry=registry,
        )

    def signature_failure(self, message: str) -> None:
        self.signature_failures.labels(SIGNATURE_REASONS.get(message, "other")).inc()

    def set_outbox(self, gauges: store.OutboxGauges | None) -> None:
        """Publish a sample; `None` (the database did not answer) publishes NaN rather than stale numbers."""
        nan = math.nan
        values = {
            "pending": gauges.pending if gauges else nan,
            "pending_due": gauges.pending_due if gauges else nan,
            "leased": gauges.leased if gauges else nan,
            "failed": gauges.failed if gauges else nan,
        }
        for state, value in values.items():
            self.outbox_actions.labels(state).set(value)
        self.outbox_oldest_pending_age.set(gauges.oldest_pending_age_seconds if gauges else nan)


BACKEND_METRICS = web.AppKey("backend_metrics", BackendMetrics)


def count_signature_failure(request: web.Request, message: str) -> None:
    request.app[BACKEND_METRICS].signature_failure(message)


# ---- /metrics ---------------------------------------------------------------------------------------


async def sample_outbox(app: web.Application) -> None:
    metrics = app[BACKEND_METRICS]
    try:
        async with asyncio.timeout(SAMPLE_TIMEOUT_SECONDS), app[DB_POOL].acquire() as conn:
            gauges = await store.outbox_gauges(conn)
    except DATABASE_UNAVAILABLE as exc:
        log.warning("outbox gauges not sampled: %s", exc)
        metrics.set_outbox(None)
        return
    metrics.set_outbox(gauges)


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text format 0.0.4 (not signed: scrapers hold no internal secret)."""
    await sample_outbox(request.app)
    body = generate_latest(request.app[BACKEND_METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


# ---- the middleware and what it reads from answers ---------------------------------------------------

Observer = Callable[[web.Request, web.Response, BackendMetrics], Awaitable[None]]


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def _count_enqueued(request: web.Request, metrics: BackendMetrics, ids: list[int], source: str) -> None:
    if not ids:
        return
    known = request.get(ENQUEUED_TYPES)
    if known is not None:  # the handler knew them: no query on the hot path
        by_type = dict(collections.Counter(t.value for t in known))
    else:
        async with request.app[DB_POOL].acquire() as conn:
            by_type = await store.action_types(conn, ids)
    for action_type, n in by_type.items():
        metrics.actions_enqueued.labels(action_type, source).inc(n)


class _EventName(BaseModel):
    """Only the `event` of an InstallationSyncEvent (already validated by the handler): nothing else is checked."""

    event: str


def _ingest(event_name: str | None) -> Observer:
    """`event_name` None: the event is in the request body (installation / installation_repositories)."""

    async def observe(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
        if response.status != 200:
            return
        answer = IngestResponse.model_validate_json(_body(response))
        event = event_name or _EventName.model_validate_json(await request.read()).event
        decision = answer.decision.value if answer.decision is not None else "none"
        metrics.webhook_ingests.labels(event, answer.status.value, decision).inc()
        _count_parking(metrics, answer)
        metrics.parked_events.labels("replayed").inc(request.get(REPLAYED, 0))
        await _count_enqueued(request, metrics, answer.enqueued_action_ids, "webhook")

    return observe


def _count_parking(metrics: BackendMetrics, answer: IngestResponse) -> None:
    if answer.status is IngestStatus.PARKED:
        metrics.parked_events.labels("parked").inc()
    elif answer.status is IngestStatus.DROPPED:
        metrics.parked_events.labels("dropped").inc()


async def _ingest_batch(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    if response.status != 200:
        return
    ids: list[int] = []
    for item in IngestBatchResponse.model_validate_json(_body(response)).results:
        if item.response is None:
            continue  # not written: the handler logged it, the sender sends it again
        answer = item.response
        decision = answer.decision.value if answer.decision is not None else "none"
        metrics.webhook_ingests.labels("pull_request", answer.status.value, decision).inc()
        _count_parking(metrics, answer)
        ids.extend(answer.enqueued_action_ids)
    await _count_enqueued(request, metrics, ids, "webhook")


async def _claim(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    if response.status != 200:
        metrics.claim_requests.labels("error").inc()
        return
    answer = ClaimResponse.model_validate_json(_body(response))
    metrics.claim_requests.labels("actions" if answer.actions else "empty").inc()
    for action in answer.actions:
        metrics.actions_handed_out.labels(action.action_type.value).inc()


_RESULT_REFUSALS = {404: "unknown_action", 409: "stale_lease"}


async def _result(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    if response.status == 200:
        status = ResultResponse.model_validate_json(_body(response)).status.value
    elif response.status in _RESULT_REFUSALS:
        status = _RESULT_REFUSALS[response.status]
    else:
        return  # the request itself was invalid: only the HTTP metrics count it
    outcome = ResultRequest.model_validate_json(await request.read()).outcome.value
    metrics.action_results.labels(outcome, status).inc()


async def _results(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    if response.status != 200:
        return
    sent = BatchResultRequest.model_validate_json(await request.read())
    outcomes = {r.action_id: r.outcome.value for r in sent.results}
    for item in BatchResultResponse.model_validate_json(_body(response)).results:
        status = item.status.value if item.status is not None else item.refused or "unknown_action"
        metrics.action_results.labels(outcomes[item.action_id], status).inc()


async def _exempt(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    if response.status == 200:
        answer = ExemptResponse.model_validate_json(_body(response))
        await _count_enqueued(request, metrics, answer.enqueued_action_ids, "owner_api")


async def _verify_submit(request: web.Request, response: web.Response, metrics: BackendMetrics) -> None:
    # The form's only 200 answer is "Verified": every refusal has its own 4xx status.
    if response.status == 200:
        metrics.verifications.inc()


# Keyed by the registered handler (what `request.match_info.handler` is).
OBSERVERS: dict[Handler, Observer] = {
    handlers.pull_request_event: _ingest("pull_request"),
    handlers.pull_request_events: _ingest_batch,
    handlers.installation_sync_event: _ingest(None),
    handlers.command_event: _ingest("issue_comment"),
    handlers.claim: _claim,
    handlers.result: _result,
    handlers.results: _results,
    owner.exempt_pull: _exempt,
    verify.verify_submit: _verify_submit,
}


def _body(response: web.Response) -> bytes | str:
    """The answer's body: bytes as given, or a text payload (`json_response` passes a str) decoded."""
    body = response.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, Payload):
        return body.decode(response.charset or "utf-8")
    raise TypeError(f"unexpected response body {type(body).__name__}")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: sees the final status, including error_middleware's JSON errors."""
    metrics = request.app[BACKEND_METRICS]
    route = route_label(request)
    method = request.method if request.method in _METHODS else "OTHER"
    started = time.perf_counter()
    status = "500"
    try:
        response = await handler(request)
        status = str(response.status)
    except web.HTTPException as exc:  # redirects (error_middleware answers the >= 400 ones)
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        metrics.http_requests.labels(route, method, status).inc()
        metrics.http_latency.labels(route, method).observe(time.perf_counter() - started)
    observer = OBSERVERS.get(request.match_info.handler)
    if observer is not None and isinstance(response, web.Response):
        try:
            await observer(request, response, metrics)
        except (ValidationError, TypeError, ValueError, asyncpg.PostgresError, OSError) as exc:
            # A metric is never worth failing a request that already succeeded.
            log.warning("metrics not recorded for %s: %s", route, exc)
    return response
