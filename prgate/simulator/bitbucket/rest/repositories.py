"""Repositories, file contents (`src`) and commit build statuses."""

from __future__ import annotations

from typing import cast

from aiohttp import web

from prgate.simulator.bitbucket.errors import ApiError, not_found
from prgate.simulator.bitbucket.http import (
    json_object,
    page,
    renderer_of,
    scoped_repo,
    scoped_workspace,
    state_of,
    token_of,
)
from prgate.simulator.bitbucket.model import BUILD_STATES, BuildState

# `?role=` as Bitbucket filters for the caller: member (read), contributor (write), admin.
ROLES = {"member": 0, "contributor": 1, "admin": 2}
LEVELS = {"read": 0, "write": 1, "admin": 2}


async def list_repositories(request: web.Request) -> web.Response:
    """An access token sees its workspace's repositories; a user's OAuth token those they hold a
    permission on, at least ``role`` (Atlassian's suggested check for non-admins after CHANGE-2770)."""
    ws = scoped_workspace(request)
    state = state_of(request)
    render = renderer_of(request)
    token = token_of(request)
    role = request.query.get("role")
    if role is not None and role not in ROLES:
        raise ApiError(400, f"Invalid role: {role}")
    repos = sorted((r for r in state.repositories.values() if r.workspace == ws.slug), key=lambda r: r.created_on)
    if token.kind == "user":
        wanted = ROLES[role or "member"]
        repos = [r for r in repos
                 if LEVELS.get(state.permissions.get((r.workspace, r.slug, token.account_id or ""), ""), -1) >= wanted]
    return page(request, [render.repository(r) for r in repos])


async def get_repository(request: web.Request) -> web.Response:
    return web.json_response(renderer_of(request).repository(scoped_repo(request)))


async def get_src(request: web.Request) -> web.Response:
    """`GET …/src/{commit-or-branch}/{path}`: the raw file, 404 when the file or the ref is absent."""
    repo = scoped_repo(request)
    commit = state_of(request).resolve_commit(repo, request.match_info["ref"])
    path = request.match_info["path"]
    content = commit.files.get(path)
    if content is None:
        raise not_found(f"No such file or directory: {path}")
    return web.Response(text=content, content_type="text/plain", charset="utf-8")


async def create_build_status(request: web.Request) -> web.Response:
    """`POST …/commit/{hash}/statuses/build`: `key` and `state` required; the same key updates it."""
    repo = scoped_repo(request)
    body = await json_object(request)
    key, state_value, url = body.get("key"), body.get("state"), body.get("url")
    fields: dict[str, str] = {}
    if not isinstance(key, str) or not key or len(key) > 255:
        fields["key"] = "This field is required."
    if state_value not in BUILD_STATES:
        fields["state"] = f"must be one of {', '.join(BUILD_STATES)}"
    if not isinstance(url, str) or not url:
        fields["url"] = "This field is required."
    for optional in ("name", "description", "refname"):
        if body.get(optional) is not None and not isinstance(body[optional], str):
            fields[optional] = "must be a string"
    if fields:
        raise ApiError(400, "Bad request", detail=str(fields))
    assert isinstance(key, str)
    assert isinstance(url, str)
    state = state_of(request)
    commit = state.resolve_commit(repo, request.match_info["commit"])
    existed = (repo.workspace, repo.slug, commit.hash, key) in state.statuses
    status = state.set_status(repo.workspace, repo.slug, commit.hash, key=key,
                              state=cast(BuildState, state_value), url=url, name=body.get("name"),
                              description=body.get("description"), refname=body.get("refname"))
    return web.json_response(renderer_of(request).status(status), status=200 if existed else 201)


async def list_statuses(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    render = renderer_of(request)
    statuses = state_of(request).statuses_of(repo.workspace, repo.slug, request.match_info["commit"])
    return page(request, [render.status(s) for s in statuses])


async def get_build_status(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    state = state_of(request)
    commit = state.resolve_commit(repo, request.match_info["commit"])
    status = state.statuses.get((repo.workspace, repo.slug, commit.hash, request.match_info["key"]))
    if status is None:
        raise not_found("Commit status not found")
    return web.json_response(renderer_of(request).status(status))
