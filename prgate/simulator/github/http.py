"""Request helpers of the GitHub REST and control handlers: path and query values, the caller's
repository scope and permissions, GitHub's pagination, and webhooks sent after a change."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from prgate.simulator.core.app import SIM_SESSION, spawn
from prgate.simulator.core.http import query_int
from prgate.simulator.core.types import JsonDict
from prgate.simulator.github import webhooks
from prgate.simulator.github.auth import AUTH
from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.keys import SIM_STATE
from prgate.simulator.github.model import Repository, WebhookDelivery
from prgate.simulator.github.render import Renderer
from prgate.simulator.github.state import SimulatorState


def state_of(request: web.Request) -> SimulatorState:
    return request.app[SIM_STATE]


def renderer_of(request: web.Request) -> Renderer:
    return Renderer(state_of(request), f"{request.scheme}://{request.host}")


def path_int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ApiError(404, "Not Found") from None


def full_name_of(request: web.Request) -> str:
    """The path's repository name: ``/repos/{owner}/{repo}/…`` names it, ``/repositories/{id}/…``
    (GitHub serves every repository route under both) resolves it from the id."""
    if "repository_id" in request.match_info:
        return state_of(request).repo_by_id(path_int(request, "repository_id")).full_name
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


def scoped_repo(request: web.Request) -> Repository:
    """The path's repository, if the caller's installation token may see it (GitHub says 404 if not)."""
    repo = state_of(request).repo_by_name(full_name_of(request))
    auth = request[AUTH]
    if auth.kind == "installation":
        token = auth.token
        if repo.installation_id != auth.installation_id or (
            token is not None and token.repository_ids is not None and repo.id not in token.repository_ids
        ):
            raise ApiError(404, "Not Found")
    return repo


def require(request: web.Request, level: str, *permissions: str) -> None:
    """403 unless the installation token has ``level`` on one of ``permissions``."""
    token = request[AUTH].token
    if token is None:
        return
    rank = {"read": 1, "write": 2, "admin": 3}
    if any(rank.get(token.permissions.get(p, ""), 0) >= rank[level] for p in permissions):
        return
    raise ApiError(403, "Resource not accessible by integration")


def _link_header(url: URL, page: int, last_page: int) -> str | None:
    """GitHub's ``Link`` header: prev, next, last, first, built on the request's own URL."""
    if last_page <= 1 and page <= 1:
        return None

    def at(number: int) -> str:
        query = [(k, v) for k, v in url.query.items() if k != "page"] + [("page", str(number))]
        return str(url.with_query(query))

    parts: list[str] = []
    if page > 1:
        parts.append(f'<{at(page - 1)}>; rel="prev"')
    if page < last_page:
        parts.append(f'<{at(page + 1)}>; rel="next"')
        parts.append(f'<{at(last_page)}>; rel="last"')
    if page > 1:
        parts.append(f'<{at(1)}>; rel="first"')
    return ", ".join(parts)


def paginate(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    per_page = query_int(request, "per_page", 30)
    per_page = 30 if per_page <= 0 else min(per_page, 100)
    page = max(1, query_int(request, "page", 1))
    last_page = max(1, math.ceil(len(items) / per_page))
    start = (page - 1) * per_page
    link = _link_header(request.url, page, last_page) if items else None
    return items[start : start + per_page], ({"Link": link} if link else {})


def spawn_webhook(request: web.Request, event: str, payload: JsonDict) -> None:
    """Deliver a webhook in the background, as GitHub does after an API change."""
    app = request.app
    state = app[SIM_STATE]
    if not state.config.webhook_url or not state.config.webhooks_on_api_changes:
        return
    spawn(app, _deliver_quietly(state, app[SIM_SESSION], event, payload))


async def _deliver_quietly(
    state: SimulatorState, session: aiohttp.ClientSession, event: str, payload: JsonDict
) -> None:
    await deliver_kept(state, session, event, payload)


async def deliver_kept(
    state: SimulatorState,
    session: aiohttp.ClientSession,
    event: str,
    payload: JsonDict,
    *,
    url: str | None = None,
    secret: str | None = None,
    delivery_id: str | None = None,
    redelivery: bool = False,
) -> WebhookDelivery:
    """``webhooks.deliver``, keeping the payload on the recorded attempt (for redelivery)."""
    delivery = await webhooks.deliver(
        state, session, event, payload, url=url, secret=secret, delivery_id=delivery_id
    )
    return state.amend_delivery(delivery.id, payload=payload, redelivery=redelivery or None)
