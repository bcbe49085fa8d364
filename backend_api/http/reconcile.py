"""Thin handlers of the reconciliation endpoints (signed, internal; docs/reconcile.md)."""

from __future__ import annotations

from aiohttp import web

from backend_api.http.errors import ApiError, json_response, path_id, read_model
from backend_api.keys import DB_POOL, SETTINGS
from backend_api.reconcile import service
from shared_contracts.reconcile import (
    InstallationSnapshot,
    PullRequestSnapshot,
    ReconcileRunFinish,
    ReconcileRunStart,
)


def _run_errors(run_id: int, exc: Exception) -> ApiError:
    if isinstance(exc, service.RunNotFound):
        return ApiError(404, "not_found", f"no reconciliation run {run_id}")
    return ApiError(409, "run_finished", f"reconciliation run {run_id} is finished; start a new one")


async def start_run(request: web.Request) -> web.Response:
    req = await read_model(request, ReconcileRunStart)
    return json_response(await service.start_run(request.app[DB_POOL], req))


async def installation_snapshot(request: web.Request) -> web.Response:
    snap = await read_model(request, InstallationSnapshot)
    settings = request.app[SETTINGS]
    try:
        return json_response(await service.reconcile_installation(
            request.app[DB_POOL], snap, public_url=settings.public_url, max_attempts=settings.action_max_attempts
        ))
    except (service.RunNotFound, service.RunFinished) as exc:
        raise _run_errors(snap.run_id, exc) from None


async def pull_request_snapshot(request: web.Request) -> web.Response:
    snap = await read_model(request, PullRequestSnapshot)
    settings = request.app[SETTINGS]
    try:
        response = await service.reconcile_pull_requests(
            request.app[DB_POOL], snap, public_url=settings.public_url, max_attempts=settings.action_max_attempts
        )
    except (service.RunNotFound, service.RunFinished) as exc:
        raise _run_errors(snap.run_id, exc) from None
    return json_response(response)


async def finish_run(request: web.Request) -> web.Response:
    run_id = path_id(request, "run_id")
    req = await read_model(request, ReconcileRunFinish)
    try:
        return json_response(await service.finish_run(request.app[DB_POOL], run_id, req))
    except (service.RunNotFound, service.RunFinished) as exc:
        raise _run_errors(run_id, exc) from None
