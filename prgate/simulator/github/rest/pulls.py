"""Pull requests: get, list, and close/reopen/edit (which sends a webhook)."""

from __future__ import annotations

from typing import cast

from aiohttp import web

from prgate.simulator.core.http import json_body
from prgate.simulator.github import events
from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.http import (
    paginate,
    path_int,
    renderer_of,
    require,
    scoped_repo,
    spawn_webhook,
    state_of,
)
from prgate.simulator.github.model import PrState


async def get_pull_request(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "pull_requests")
    pr = state_of(request).get_pull_request(repo.full_name, path_int(request, "pull_number"))
    return web.json_response(renderer_of(request).pull_request(pr))


async def update_pull_request(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "write", "pull_requests")
    state = state_of(request)
    number = path_int(request, "pull_number")
    state.get_pull_request(repo.full_name, number)
    body = await json_body(request)
    new_state = body.get("state")
    if new_state is not None and new_state not in ("open", "closed"):
        raise ApiError(
            422,
            "Validation Failed",
            errors=[{"resource": "PullRequest", "code": "invalid", "field": "state"}],
        )
    for field in ("title", "body"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise ApiError(422, f"Invalid request: {field} is not a string")
    before = state.get_pull_request(repo.full_name, number).state
    pr = state.edit_pull_request(
        repo.full_name,
        number,
        state=cast(PrState | None, new_state),
        title=body.get("title"),
        body=body.get("body"),
    )
    render = renderer_of(request)
    if pr.state != before:
        action = "closed" if pr.state == "closed" else "reopened"
        spawn_webhook(request, "pull_request", events.pull_request_event(render, pr, action, state.bot_user))
    elif body.get("title") is not None or body.get("body") is not None:
        spawn_webhook(request, "pull_request", events.pull_request_event(render, pr, "edited", state.bot_user))
    return web.json_response(render.pull_request(pr))


async def list_pull_requests(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "pull_requests")
    wanted = request.query.get("state", "open")
    if wanted not in ("open", "closed", "all"):
        raise ApiError(
            422, "Validation Failed", errors=[{"resource": "PullRequest", "code": "invalid", "field": "state"}]
        )
    direction = request.query.get("direction", "desc")
    pulls = state_of(request).list_pull_requests(repo.full_name, wanted, direction)
    page, headers = paginate(request, pulls)
    render = renderer_of(request)
    return web.json_response([render.pull_request(p, full=False) for p in page], headers=headers)
