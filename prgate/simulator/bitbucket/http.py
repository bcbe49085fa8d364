"""Request helpers of the Bitbucket handlers: the app's state, the caller's token and what it may
see, Bitbucket's paging (`values, page, pagelen, size, next`), and webhooks sent after a change."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from yarl import URL

from prgate.simulator.bitbucket import webhooks
from prgate.simulator.bitbucket.errors import ApiError, not_found
from prgate.simulator.bitbucket.model import Repository, Token, Workspace
from prgate.simulator.bitbucket.render import Renderer
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.app import SIM_SESSION, spawn
from prgate.simulator.core.control import Handler
from prgate.simulator.core.types import JsonDict

BB_STATE = web.AppKey("prgate_sim_bitbucket_state", BitbucketState)
BB_PREFIX = web.AppKey("prgate_sim_bitbucket_prefix", str)
# (method, handler) -> the credential the route needs: "workspace", "user" or "any".
BB_ROUTE_AUTH: web.AppKey[dict[tuple[str, Handler], str]] = web.AppKey("prgate_sim_bitbucket_route_auth")
TOKEN = web.RequestKey("prgate_sim_bitbucket_token", Token)


def state_of(request: web.Request) -> BitbucketState:
    return request.app[BB_STATE]


def base_of(request: web.Request) -> str:
    """`{origin}/bitbucket`: both the API root (`…/2.0`) and the web root, as clients are configured."""
    return f"{request.scheme}://{request.host}{request.app[BB_PREFIX]}"


def renderer_of(request: web.Request) -> Renderer:
    return Renderer(state_of(request), base_of(request))


def token_of(request: web.Request) -> Token:
    return request[TOKEN]


def path_int(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise not_found() from None
    if value < 1 or value > 2**31 - 1:
        raise not_found()
    return value


def scoped_workspace(request: web.Request) -> Workspace:
    """The path's workspace, if the caller's workspace token is for it (else 403, as Bitbucket)."""
    ws = state_of(request).workspace(request.match_info["workspace"])
    token = token_of(request)
    if token.kind == "user":
        return ws  # what a user may see inside it is the handler's (their permissions)
    if token.kind == "workspace" and token.workspace != ws.slug:
        raise ApiError(403, "Your credentials lack one or more required privilege scopes.",
                       detail="This access token is scoped to another workspace.")
    return ws


def scoped_repo(request: web.Request) -> Repository:
    """The path's repository; another workspace's repository is a 404, as Bitbucket answers for a
    private repository the caller cannot see."""
    state = state_of(request)
    token = token_of(request)
    try:
        ws = state.workspace(request.match_info["workspace"])
    except ApiError:
        raise state_not_found() from None
    if token.kind == "workspace" and token.workspace != ws.slug:
        raise state_not_found()
    repo = state.repository(ws.slug, request.match_info["repo_slug"])
    if token.kind == "user" and (repo.workspace, repo.slug, token.account_id) not in state.permissions:
        raise state_not_found()  # a user sees only the repositories they hold a permission on
    return repo


def state_not_found() -> ApiError:
    return not_found("You may not have access to this repository or it no longer exists in this workspace. "
                     "If you think this repository exists and you have access, make sure you are authenticated.")


async def json_object(request: web.Request) -> JsonDict:
    """A REST request's JSON object body; anything else is Bitbucket's 400."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Bad request", detail="The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Bad request", detail="The request body must be a JSON object.")
    return data


def page(request: web.Request, items: list[Any]) -> web.Response:
    """One page of ``items`` (already rendered): `pagelen` default 10, at most 100; `page` from 1;
    `next`/`previous` absolute URLs on the simulator's origin, the query kept."""
    config = state_of(request).config
    try:
        pagelen = int(request.query.get("pagelen", config.default_pagelen))
        number = int(request.query.get("page", 1))
    except ValueError:
        raise ApiError(400, "Invalid pagelen or page") from None
    if pagelen < 1 or number < 1:
        raise ApiError(400, "Invalid pagelen or page")
    pagelen = min(pagelen, config.max_pagelen)
    start = (number - 1) * pagelen
    body: JsonDict = {"pagelen": pagelen, "size": len(items), "page": number,
                      "values": items[start:start + pagelen]}
    url = URL(f"{request.scheme}://{request.host}{request.path}").with_query(request.query)
    moved = state_of(request).faults.config.link_origin
    if moved is not None:
        # The `link_origin` fault: `next` on another origin, as a poisoned answer could say; a client
        # must not follow it with its token.
        other = URL(moved)
        url = url.with_scheme(other.scheme).with_host(other.host or "").with_port(other.port)
    if start + pagelen < len(items):
        body["next"] = str(url.update_query(page=number + 1))
    if number > 1:
        body["previous"] = str(url.update_query(page=number - 1))
    return web.json_response(body)


def send_after(request: web.Request, workspace: str, event_key: str, payload: JsonDict) -> None:
    """Deliver in the background, as Bitbucket does: the API answer does not wait for receivers."""
    state = state_of(request)
    spawn(request.app, _deliver(state, request.app, workspace, event_key, payload))


async def _deliver(state: BitbucketState, app: web.Application, workspace: str, event_key: str,
                   payload: JsonDict) -> None:
    await webhooks.deliver(state, app[SIM_SESSION], workspace, event_key, payload)
