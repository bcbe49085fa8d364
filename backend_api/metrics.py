"""Prometheus metrics of the backend, on a registry the app owns (docs/operations.md, Metrics).

Nothing here registers on prometheus_client's global default registry: `create_app` builds one
`CollectorRegistry` per app, so two apps in one process (tests) never share a counter.

Where the numbers come from:

- `metrics_middleware` (outermost) times every request and labels it with the matched route's
  canonical path (`/internal/v2/bot-actions/{action_id}/result`, never the raw path with its id).
  After the handler answered, the observer of its route (`OBSERVERS`, by route name) counts the
  typed fact the handler left on the request (`backend_api.facts`): ingests, claims, results,
  owner-API exemptions and the verification form. Handlers know no metric; metrics know no handler.
- `internal_auth_middleware` counts signature failures by reason (`count_signature_failure`).
- `/metrics` samples the outbox gauges from PostgreSQL (one query) just before rendering.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from backend_api.http.errors import Handler
from backend_api.keys import CLAIMED, CONFIG_READ, DB_POOL, ENQUEUED, INGESTED, REPORTED, TENANCY
from backend_api.store import metrics as store
from backend_api.store.db import DATABASE_UNAVAILABLE
from shared_contracts.actions import ActionType, Provider
from shared_contracts.events import IngestStatus

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
        self.bitbucket_permissions = Counter(
            "backend_bitbucket_permission_lookups_total", "Authors' and commenters' permissions asked of Bitbucket, "
            "by outcome: read, write, admin, none, cached; no_account_id, no_token, refused (not known: never an "
            "exemption)", ["outcome"], registry=registry,
        )
        self.bitbucket_tenancy = Counter(
            "backend_bitbucket_tenancy_total", "Bitbucket tenancy calls by operation (connect, disconnect, token, "
            "rediscover) and outcome (one per workspace for rediscover; refusals by their error)",
            ["operation", "outcome"], registry=registry,
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

        self.api_token_auth = Counter(
            "backend_api_token_auth_total",
            "Read-API requests with an Authorization header, by outcome: ok, malformed, unknown, revoked, "
            "out_of_scope (answered 404 like an unknown repository)",
            ["outcome"], registry=registry,
        )
        for outcome in ("ok", "malformed", "unknown", "revoked", "out_of_scope"):
            self.api_token_auth.labels(outcome)

        # Ingest and outbox.
        self.webhook_ingests = Counter(
            "backend_webhook_ingests_total", "Deliveries ingested (answered 200), by event, status and decision",
            ["event", "status", "decision"], registry=registry,
        )
        self.parked_events = Counter(
            "backend_parked_events_total",
            "Events for an installation not known yet (gate/parking.py): parked, replayed once it was "
            "known, dropped (parking full) or expired (it never came)",
            ["outcome"], registry=registry,
        )
        for outcome in ("parked", "replayed", "dropped", "expired"):
            self.parked_events.labels(outcome)
        self.ingest_batch_size = Histogram(
            "backend_ingest_batch_deliveries", "pull_request deliveries written per transaction (gate/batcher.py)",
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

        # The repository config file (docs/configuration.md).
        self.config_file_reads = Counter(
            "backend_config_file_reads_total",
            "Reads of a repository's .github/prgate.yml, by trigger (push, refresh) and result: valid, invalid "
            "(the last valid configuration stays in force), absent (no file applies), unavailable (GitHub "
            "could not be asked; read again later), skipped (no longer installed)",
            ["trigger", "result"], registry=registry,
        )
        for trigger in ("push", "refresh"):
            for result in ("valid", "invalid", "absent", "unavailable"):
                self.config_file_reads.labels(trigger, result)

        # Challenges and maintenance.
        self.challenges_timed_out = Counter(
            "backend_challenges_timed_out_total", "Challenges resolved by the deadline sweeper of this replica",
            registry=registry,
        )
        self.verifications = Counter(
            "backend_verifications_total", "Successful submissions of the verification form", registry=registry,
        )
        self.sign_ins = Counter(
            "backend_sign_ins_total",
            "Sign-in attempts by provider and outcome (signed_in, not_configured, cancelled, bad_state, no_code, "
            "refused, unavailable, account_conflict); not_configured also counts verification pages that could "
            "not offer it",
            ["provider", "outcome"], registry=registry,
        )
        self.sessions_ignored = Counter(
            "backend_sessions_ignored_total",
            "Valid sessions read as signed out because the page serves another provider's users",
            ["provider"], registry=registry,
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


def count_sign_in(request: web.Request, provider: Provider, outcome: str) -> None:
    request.app[BACKEND_METRICS].sign_ins.labels(provider.value, outcome).inc()


def count_ignored_session(request: web.Request, provider: Provider) -> None:
    request.app[BACKEND_METRICS].sessions_ignored.labels(provider.value).inc()


def count_api_token(request: web.Request, outcome: str) -> None:
    request.app[BACKEND_METRICS].api_token_auth.labels(outcome).inc()


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

Observer = Callable[[web.Request, int, BackendMetrics], Awaitable[None]]


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def _count_enqueued(
    request: web.Request,
    metrics: BackendMetrics,
    ids: Sequence[int],
    known: Sequence[ActionType] | None,
    source: str,
) -> None:
    if not ids:
        return
    if known is not None:  # the handler knew them: no query on the hot path
        by_type = dict(collections.Counter(t.value for t in known))
    else:
        async with request.app[DB_POOL].acquire() as conn:
            by_type = await store.action_types(conn, list(ids))
    for action_type, n in by_type.items():
        metrics.actions_enqueued.labels(action_type, source).inc(n)


async def _ingest(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    fact = request.get(INGESTED)
    if status != 200 or fact is None:
        return
    for answer in fact.answers:
        decision = answer.decision.value if answer.decision is not None else "none"
        metrics.webhook_ingests.labels(fact.event, answer.status.value, decision).inc()
        if answer.status is IngestStatus.PARKED:
            metrics.parked_events.labels("parked").inc()
        elif answer.status is IngestStatus.DROPPED:
            metrics.parked_events.labels("dropped").inc()
    metrics.parked_events.labels("replayed").inc(fact.replayed)
    ids = [i for answer in fact.answers for i in answer.enqueued_action_ids]
    await _count_enqueued(request, metrics, ids, fact.enqueued_types, "webhook")


async def _claim(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    fact = request.get(CLAIMED)
    if status != 200 or fact is None:
        metrics.claim_requests.labels("error").inc()
        return
    metrics.claim_requests.labels("actions" if fact.action_types else "empty").inc()
    for action_type in fact.action_types:
        metrics.actions_handed_out.labels(action_type.value).inc()


async def _results(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    # Set for an answer and for the refusals that are outcomes (unknown action, stale lease); an
    # invalid request has none: only the HTTP metrics count it.
    fact = request.get(REPORTED)
    if fact is None:
        return
    for outcome, result in fact.results:
        metrics.action_results.labels(outcome, result).inc()


async def _exempt(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    fact = request.get(ENQUEUED)
    if status == 200 and fact is not None:
        await _count_enqueued(request, metrics, fact.action_ids, None, "owner_api")


async def _verify_submit(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    # The form's only 200 answer is "Verified": every refusal has its own 4xx status.
    if status == 200:
        metrics.verifications.inc()


async def _tenancy(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    fact = request.get(TENANCY)
    if fact is None:
        return
    for outcome in fact.outcomes:
        metrics.bitbucket_tenancy.labels(fact.operation, outcome).inc()


async def _config_read(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    fact = request.get(CONFIG_READ)
    if fact is None:
        return
    for result in fact.results:
        metrics.config_file_reads.labels(fact.trigger, result).inc()


async def _config_push(request: web.Request, status: int, metrics: BackendMetrics) -> None:
    await _ingest(request, status, metrics)
    await _config_read(request, status, metrics)


def route_name(request: web.Request) -> str:
    """The matched route's name: its handler's name, which is its ``operationId`` in /openapi.json."""
    handler = request.match_info.handler
    return getattr(handler, "__name__", "")


# Keyed by route name, so the metrics import no handler: the handlers hand their facts over (keys.INGESTED, …).
OBSERVERS: dict[str, Observer] = {
    "pull_request_event": _ingest,
    "pull_request_events": _ingest,
    "installation_sync_event": _ingest,
    "command_event": _ingest,
    "bitbucket_pull_request_event": _ingest,
    "bitbucket_command_event": _ingest,
    "bitbucket_push_event": _config_push,
    "config_push_event": _config_push,
    "config_refresh": _config_read,
    "claim": _claim,
    "result": _results,
    "results": _results,
    "exempt_pull": _exempt,
    "verify_submit": _verify_submit,
    "connect_workspace": _tenancy,
    "disconnect_workspace": _tenancy,
    "workspace_token": _tenancy,
    "rediscover": _tenancy,
}


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
    observer = OBSERVERS.get(route_name(request))
    if observer is not None and isinstance(response, web.Response):
        try:
            await observer(request, response.status, metrics)
        except (TypeError, ValueError, asyncpg.PostgresError, OSError) as exc:
            # A metric is never worth failing a request that already succeeded.
            log.warning("metrics not recorded for %s: %s", route, exc)
    return response
