"""A repository, its commit statuses and its collaborators' permissions."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.http import json_body
from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.http import (
    paginate,
    renderer_of,
    require,
    scoped_repo,
    state_of,
)


async def get_repository(request: web.Request) -> web.Response:
    return web.json_response(renderer_of(request).repository(scoped_repo(request)))



async def create_commit_status(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "write", "statuses")
    body = await json_body(request)
    for field in ("context", "description", "target_url"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise ApiError(422, f"Invalid request: {field} is not a string")
    status = state_of(request).add_status(
        repo.full_name,
        request.match_info["sha"],
        str(body.get("state", "")),
        context=body.get("context") or "default",
        description=body.get("description"),
        target_url=body.get("target_url"),
    )
    data = renderer_of(request).status(status)
    return web.json_response(data, status=201, headers={"Location": data["url"]})


async def list_commit_statuses(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "statuses")
    statuses = state_of(request).statuses_for(repo.full_name, request.match_info["ref"])
    page, headers = paginate(request, statuses)
    render = renderer_of(request)
    return web.json_response([render.status(s) for s in page], headers=headers)


async def get_collaborator_permission(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    role, user = state_of(request).permission_of(repo.full_name, request.match_info["username"])
    return web.json_response(renderer_of(request).collaborator_permission(role, user))
