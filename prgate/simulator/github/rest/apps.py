"""``/app…`` and ``/installation…``: the App, its installations, tokens and webhook deliveries."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from prgate.simulator.core.app import SIM_SESSION, spawn
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.http import json_body, query_int
from prgate.simulator.github.auth import AUTH
from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.http import (
    deliver_kept,
    full_name_of,
    paginate,
    path_int,
    renderer_of,
    state_of,
)
from prgate.simulator.github.model import WebhookDelivery
from prgate.simulator.github.state import SimulatorState


async def create_access_token(request: web.Request) -> web.Response:
    state = state_of(request)
    installation_id = path_int(request, "installation_id")
    body = await json_body(request)
    installation = state.get_installation(installation_id)
    repository_ids: list[int] | None = None
    if body.get("repository_ids") is not None or body.get("repositories") is not None:
        owned = state.installation_repositories(installation.id)
        by_name = {r.name.lower(): r.id for r in owned}
        raw_ids = body.get("repository_ids") or []
        if not isinstance(raw_ids, list) or not all(isinstance(r, int) for r in raw_ids):
            raise ApiError(422, "Invalid request: repository_ids must be a list of integers")
        repository_ids = list(raw_ids)
        for name in body.get("repositories") or []:
            if str(name).lower() not in by_name:
                raise ApiError(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
            repository_ids.append(by_name[str(name).lower()])
    permissions = body.get("permissions")
    if permissions is not None and not isinstance(permissions, dict):
        raise ApiError(422, "Invalid request: permissions is not an object")
    token = state.issue_token(installation.id, permissions=permissions, repository_ids=repository_ids)
    return web.json_response(renderer_of(request).installation_token(token), status=201)


async def list_app_installations(request: web.Request) -> web.Response:
    state = state_of(request)
    installations = sorted(state.installations.values(), key=lambda i: i.id)
    page, headers = paginate(request, installations)
    render = renderer_of(request)
    return web.json_response([render.installation(i) for i in page], headers=headers)


async def get_app_installation(request: web.Request) -> web.Response:
    installation = state_of(request).get_installation(path_int(request, "installation_id"))
    return web.json_response(renderer_of(request).installation(installation))


async def get_repo_installation(request: web.Request) -> web.Response:
    state = state_of(request)
    repo = state.repo_by_name(full_name_of(request))
    return web.json_response(renderer_of(request).installation(state.get_installation(repo.installation_id)))


async def list_hook_deliveries(request: web.Request) -> web.Response:
    state = state_of(request)
    per_page = min(max(1, query_int(request, "per_page", 30)), 100)
    cursor = query_int(request, "cursor", 0)
    newest_first = sorted(state.deliveries, key=lambda d: d.id, reverse=True)
    if cursor:
        newest_first = [d for d in newest_first if d.id < cursor]
    page = newest_first[:per_page]
    headers: dict[str, str] = {}
    if len(newest_first) > per_page:
        query = [(k, v) for k, v in request.url.query.items() if k != "cursor"]
        next_url = request.url.with_query([*query, ("cursor", str(page[-1].id))])
        headers["Link"] = f'<{next_url}>; rel="next"'
    return web.json_response([d.to_json() for d in page], headers=headers)


async def get_hook_delivery(request: web.Request) -> web.Response:
    delivery = state_of(request).get_delivery(path_int(request, "delivery_id"))
    return web.json_response(delivery.to_json_with_request())


REDELIVERY_WINDOW_SECONDS = 3 * 24 * 3600  # GitHub redelivers deliveries of the past 3 days


async def redeliver_hook_delivery(request: web.Request) -> web.Response:
    """``POST /app/hook/deliveries/{delivery_id}/attempts``: 202, then the same guid and payload are sent
    again in the background (to the attempt's URL) and recorded as a new attempt with ``redelivery``."""
    state = state_of(request)
    delivery = state.get_delivery(path_int(request, "delivery_id"))
    if delivery.payload is None or state.now() - delivery.delivered_at > REDELIVERY_WINDOW_SECONDS:
        raise SimulatorError(422, "This delivery cannot be redelivered")
    app = request.app
    spawn(app, _redeliver(state, app[SIM_SESSION], delivery))
    return web.json_response({}, status=202)


async def _redeliver(state: SimulatorState, session: aiohttp.ClientSession, delivery: WebhookDelivery) -> None:
    await deliver_kept(
        state, session, delivery.event, delivery.payload or {}, redelivery=True,
        url=delivery.url, delivery_id=delivery.guid,
    )


async def list_installation_repositories(request: web.Request) -> web.Response:
    state = state_of(request)
    auth = request[AUTH]
    assert auth.installation_id is not None
    installation = state.get_installation(auth.installation_id)
    repos = state.installation_repositories(installation.id)
    if auth.token is not None and auth.token.repository_ids is not None:
        repos = [r for r in repos if r.id in auth.token.repository_ids]
    page, headers = paginate(request, repos)
    render = renderer_of(request)
    selection = (
        "selected" if auth.token and auth.token.repository_ids is not None else (installation.repository_selection)
    )
    body = {
        "total_count": len(repos),
        "repository_selection": selection,
        "repositories": [render.repository(r) for r in page],
    }
    return web.json_response(body, headers=headers)


async def get_authenticated_app(request: web.Request) -> web.Response:
    """`GET /app` with the App JWT: the App's id, slug, name and owner."""
    return web.json_response(renderer_of(request).app(state_of(request).app))
