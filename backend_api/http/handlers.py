"""Thin HTTP handlers: parse the typed request, call a plain function, serialize the answer."""

from __future__ import annotations

import logging

from aiohttp import web

from backend_api.facts import Claimed, ConfigRead, Ingested, Reported
from backend_api.gate.command import ingest_command
from backend_api.gate.installation import ingest_installation_sync
from backend_api.gate.repo_config import ingest_config_push, outcome_of, refresh_stale
from backend_api.gate.repository import ingest_repository_renamed
from backend_api.github.api import GitHubUnavailable
from backend_api.github.app import GITHUB_APP, GitHubAppError
from backend_api.http.errors import ApiError, json_response, path_id, read_model
from backend_api.keys import (
    BITBUCKET_CONFIG,
    CLAIM_FLOOR,
    CLAIMED,
    CONFIG_READ,
    DB_POOL,
    INGEST,
    INGESTED,
    NOTIFIER,
    REPORTED,
    RNG,
    SETTINGS,
)
from backend_api.outbox.service import (
    StaleResult,
    UnknownAction,
    claim_actions,
    extend_lease,
    report_result,
    report_results,
)
from backend_api.store import deliveries, installations
from backend_api.store.db import DATABASE_UNAVAILABLE
from shared_contracts.actions import ActionType, BatchResultRequest, ClaimRequest, LeaseRequest, ResultRequest
from shared_contracts.common import ErrorBody
from shared_contracts.events import (
    CommandEvent,
    ConfigPushEvent,
    IngestBatchItem,
    IngestBatchResponse,
    InstallationSyncEvent,
    KnownDeliveriesRequest,
    KnownDeliveriesResponse,
    PullRequestEvent,
    PullRequestEventBatch,
    RepositoryRenamedEvent,
)
from shared_contracts.owner import Health, PublicAppStatus
from shared_contracts.repo_config import ConfigRefreshItem, ConfigRefreshRequest, ConfigRefreshResponse

log = logging.getLogger(__name__)


async def pull_request_event(request: web.Request) -> web.Response:
    event = await read_model(request, PullRequestEvent)
    response, enqueued = await request.app[INGEST].submit(event)
    request[INGESTED] = Ingested("pull_request", (response,), tuple(enqueued))
    return json_response(response)


async def pull_request_events(request: web.Request) -> web.Response:
    """Several deliveries in one call: each ingested as the single call would, answered on its own."""
    batch = await read_model(request, PullRequestEventBatch)
    settled = await request.app[INGEST].submit_many(batch.events)
    items: list[IngestBatchItem] = []
    enqueued: list[ActionType] = []
    for event, outcome in zip(batch.events, settled, strict=True):
        if isinstance(outcome, Exception):
            items.append(IngestBatchItem(error=_ingest_error(event, outcome)))
        else:
            items.append(IngestBatchItem(response=outcome[0]))
            enqueued.extend(outcome[1])
    answers = tuple(item.response for item in items if item.response is not None)
    request[INGESTED] = Ingested("pull_request", answers, tuple(enqueued))
    return json_response(IngestBatchResponse(results=items))


def _ingest_error(event: PullRequestEvent, exc: Exception) -> ErrorBody:
    """What the single call would have answered 500 (or 503) with; the sender retries the delivery."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        log.warning("delivery not written, database unavailable: %s", type(exc).__name__,
                    extra={"delivery_id": event.delivery_id})
        return ErrorBody(error="unavailable", message="the database is unavailable; send this delivery again")
    log.error("delivery not written", exc_info=exc, extra={"delivery_id": event.delivery_id})
    return ErrorBody(error="internal_error", message="internal server error")


async def installation_sync_event(request: web.Request) -> web.Response:
    event = await read_model(request, InstallationSyncEvent)
    settings = request.app[SETTINGS]
    answer, replayed = await ingest_installation_sync(
        request.app[DB_POOL], event, public_url=settings.public_url, max_attempts=settings.action_max_attempts
    )
    request[INGESTED] = Ingested(event.event, (answer,), replayed=replayed)
    return json_response(answer)


async def repository_renamed_event(request: web.Request) -> web.Response:
    event = await read_model(request, RepositoryRenamedEvent)
    return json_response(await ingest_repository_renamed(request.app[DB_POOL], event))


async def config_push_event(request: web.Request) -> web.Response:
    """A push that touched `.github/prgate.yml`: read it again (docs/configuration.md). GitHub out of
    reach: 503, and the receiver parks the push and replays it; nothing was written. Repositories
    inheriting from the file are marked stale, read by the config-refresh job."""
    event = await read_model(request, ConfigPushEvent)
    app, max_attempts = request.app[GITHUB_APP], request.app[SETTINGS].action_max_attempts
    extra = {"delivery_id": event.delivery_id, "installation_id": event.installation_id,
             "repo_id": event.repository.id}
    try:
        answer, result = await ingest_config_push(request.app[DB_POOL], app, event, max_attempts=max_attempts)
    except (GitHubUnavailable, GitHubAppError) as exc:
        log.warning("config file not read: %s", exc, extra=extra)
        request[CONFIG_READ] = ConfigRead("push", ("unavailable",))
        raise ApiError(503, "unavailable", "GitHub could not be asked for the config file; send it again") from None
    if result is not None:
        request[CONFIG_READ] = ConfigRead("push", (outcome_of(result),))
    request[INGESTED] = Ingested("push", (answer,))
    return json_response(answer)


async def config_refresh(request: web.Request) -> web.Response:
    """The config-refresh job: read a few repositories marked stale (installed, or inheriting from a
    pushed file). Always 200 with one result per repository: a read GitHub could not answer is
    retried later by the backend, not by this call."""
    req = await read_model(request, ConfigRefreshRequest)
    outcomes, remaining = await refresh_stale(
        request.app[DB_POOL], request.app[GITHUB_APP], limit=req.max_repositories,
        max_attempts=request.app[SETTINGS].action_max_attempts, unavailable=(GitHubUnavailable, GitHubAppError),
        others=(request.app[BITBUCKET_CONFIG],),
    )
    request[CONFIG_READ] = ConfigRead("refresh", tuple(o.result for o in outcomes))
    return json_response(ConfigRefreshResponse(
        refreshed=[ConfigRefreshItem(repo_id=o.repo_id, result=o.result) for o in outcomes],
        remaining=remaining,
    ))


async def command_event(request: web.Request) -> web.Response:
    event = await read_model(request, CommandEvent)
    settings = request.app[SETTINGS]
    response = await ingest_command(
        request.app[DB_POOL], event, public_url=settings.public_url, max_attempts=settings.action_max_attempts,
        parking=settings.parking_limits(),
    )
    request[INGESTED] = Ingested("issue_comment", (response,))
    return json_response(response)


async def claim(request: web.Request) -> web.Response:
    req = await read_model(request, ClaimRequest)
    app = request.app
    response = await claim_actions(app[DB_POOL], app[NOTIFIER], app[CLAIM_FLOOR], req)
    request[CLAIMED] = Claimed(tuple(action.action_type for action in response.actions))
    return json_response(response)


async def result(request: web.Request) -> web.Response:
    action_id = path_id(request, "action_id")
    req = await read_model(request, ResultRequest)
    settings = request.app[SETTINGS]
    try:
        response = await report_result(
            request.app[DB_POOL], request.app[CLAIM_FLOOR], action_id, req,
            base=settings.backoff_base_seconds, cap=settings.backoff_cap_seconds, rng=request.app[RNG],
        )
    except UnknownAction:
        request[REPORTED] = Reported(((req.outcome.value, "unknown_action"),))
        raise ApiError(404, "not_found", f"no action {action_id}") from None
    except StaleResult:
        request[REPORTED] = Reported(((req.outcome.value, "stale_lease"),))
        raise ApiError(
            409, "stale_lease", "this worker does not hold the lease for that attempt; nothing changed"
        ) from None
    request[REPORTED] = Reported(((req.outcome.value, response.status.value),))
    return json_response(response)


async def lease(request: web.Request) -> web.Response:
    action_id = path_id(request, "action_id")
    req = await read_model(request, LeaseRequest)
    try:
        response = await extend_lease(request.app[DB_POOL], action_id, req)
    except UnknownAction:
        raise ApiError(404, "not_found", f"no action {action_id}") from None
    except StaleResult:
        raise ApiError(
            409, "stale_lease", "this worker does not hold an unexpired lease for that attempt; nothing changed"
        ) from None
    return json_response(response)


async def results(request: web.Request) -> web.Response:
    req = await read_model(request, BatchResultRequest)
    settings = request.app[SETTINGS]
    response = await report_results(
        request.app[DB_POOL], request.app[CLAIM_FLOOR], req,
        base=settings.backoff_base_seconds, cap=settings.backoff_cap_seconds, rng=request.app[RNG],
    )
    outcomes = {r.action_id: r.outcome.value for r in req.results}
    request[REPORTED] = Reported(tuple(
        (outcomes[item.action_id], item.status.value if item.status is not None else item.refused or "unknown_action")
        for item in response.results
    ))
    return json_response(response)


async def known_deliveries(request: web.Request) -> web.Response:
    req = await read_model(request, KnownDeliveriesRequest)
    async with request.app[DB_POOL].acquire() as conn:
        known = await deliveries.known(conn, list(dict.fromkeys(req.delivery_ids)))
    return json_response(KnownDeliveriesResponse(known=known))


async def github_app_status(request: web.Request) -> web.Response:
    repo_id = path_id(request, "repo_id")
    async with request.app[DB_POOL].acquire() as conn:
        status = await installations.app_status(conn, repo_id)
    return json_response(PublicAppStatus(repo_id=repo_id, installed=status.installed))


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app[DB_POOL].acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return json_response(Health(status="unavailable", checks={"database": type(exc).__name__}), 503)
    return json_response(Health(status="ok", checks={"database": "ok"}))
