"""Bitbucket-specific ``/bitbucket/_sim/`` control routes: build a scenario (workspaces, access
tokens, repositories, users, permissions, pull requests), act as a user (push, draft, comment,
merge, decline, commit a file) — each sending the webhook Bitbucket would — and inspect comments,
statuses, hooks and deliveries. A change's deliveries are awaited and returned (``"wait": false``
sends them in the background instead)."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from prgate.simulator.bitbucket import events, webhooks
from prgate.simulator.bitbucket.http import path_int, renderer_of, send_after, state_of
from prgate.simulator.bitbucket.model import PERMISSIONS, Permission, PullRequest
from prgate.simulator.core.app import SIM_SESSION
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.http import json_body, need
from prgate.simulator.core.types import JsonDict


def _optional(body: JsonDict, key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise SimulatorError(422, f"{key!r} must be {kind.__name__}")
    return value


def _files(body: JsonDict) -> dict[str, str] | None:
    files = _optional(body, "files", dict)
    if files is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise SimulatorError(422, "'files' maps paths to text")
    return cast("dict[str, str] | None", files)


async def _send(request: web.Request, body: JsonDict, workspace: str, event_key: str,
                payload: JsonDict) -> list[JsonDict]:
    if body.get("wait", True) is False:
        send_after(request, workspace, event_key, payload)
        return []
    attempts = await webhooks.deliver(state_of(request), request.app[SIM_SESSION], workspace, event_key, payload)
    return [webhooks.attempt_json(a) for a in attempts]


def _repo_args(request: web.Request) -> tuple[str, str]:
    return request.match_info["workspace"], request.match_info["repo_slug"]


async def sim_create_workspace(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        ws = state_of(request).add_workspace(need(body, "slug", str), _optional(body, "uuid", str),
                                             _optional(body, "name", str))
    except ValueError:
        raise SimulatorError(422, "'uuid' is not a UUID") from None
    return web.json_response(renderer_of(request).workspace(ws), status=201)


async def sim_create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    token = state_of(request).create_token(request.match_info["workspace"], _optional(body, "name", str) or "prgate")
    return web.json_response({"token": token.value, "workspace": token.workspace, "account_id": token.account_id},
                             status=201)


async def sim_create_repository(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        repo = state_of(request).add_repository(
            request.match_info["workspace"], need(body, "slug", str),
            mainbranch=_optional(body, "mainbranch", str) or "main", uuid=_optional(body, "uuid", str),
            files=_files(body), is_private=_optional(body, "is_private", bool) is not False,
        )
    except ValueError:
        raise SimulatorError(422, "'uuid' is not a UUID") from None
    return web.json_response(renderer_of(request).repository(repo), status=201)


async def sim_register_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = _optional(body, "type", str) or "user"
    if kind not in ("user", "app_user"):
        raise SimulatorError(422, "'type' is user or app_user")
    try:
        user = state_of(request).add_user(
            need(body, "account_id", str), uuid=_optional(body, "uuid", str),
            nickname=_optional(body, "nickname", str), display_name=_optional(body, "display_name", str), type=kind,
        )
    except ValueError:
        raise SimulatorError(422, "'uuid' is not a UUID") from None
    return web.json_response(renderer_of(request).user(user), status=201)


async def sim_set_permission(request: web.Request) -> web.Response:
    body = await json_body(request)
    level = body.get("permission")
    if level is not None and level not in PERMISSIONS:
        raise SimulatorError(422, "'permission' is read, write, admin or null")
    workspace, slug = _repo_args(request)
    state_of(request).set_permission(workspace, slug, request.match_info["account_id"], cast(Permission | None, level))
    return web.json_response({"permission": level})


def _pr_answer(request: web.Request, pr: PullRequest, deliveries: list[JsonDict], status: int = 200) -> web.Response:
    return web.json_response({**renderer_of(request).pull_request(pr), "deliveries": deliveries}, status=status)


async def sim_open_pull_request(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    state = state_of(request)
    number = _optional(body, "id", int)
    if number is not None and number < 1:
        raise SimulatorError(422, "'id' must be a positive int")
    pr = state.open_pull_request(
        workspace, slug, author=need(body, "author", str), title=_optional(body, "title", str) or "A change",
        source_branch=need(body, "source_branch", str),
        destination_branch=_optional(body, "destination_branch", str), draft=_optional(body, "draft", bool) is True,
        description=_optional(body, "description", str) or "", files=_files(body), number=number,
    )
    payload = events.pull_request_event(renderer_of(request), pr, pr.author)
    return _pr_answer(request, pr, await _send(request, body, pr.workspace, "pullrequest:created", payload), 201)


async def sim_push_commit(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    pr = state_of(request).push_to_pull_request(workspace, slug, path_int(request, "pr_id"),
                                                message=_optional(body, "message", str), files=_files(body))
    payload = events.pull_request_event(renderer_of(request), pr, pr.author)
    return _pr_answer(request, pr, await _send(request, body, pr.workspace, "pullrequest:updated", payload))


async def sim_set_draft(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    pr = state_of(request).set_draft(workspace, slug, path_int(request, "pr_id"), need(body, "draft", bool))
    payload = events.pull_request_event(renderer_of(request), pr, pr.author)
    return _pr_answer(request, pr, await _send(request, body, pr.workspace, "pullrequest:updated", payload))


async def sim_add_comment(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    state = state_of(request)
    pr = state.pull_request(workspace, slug, path_int(request, "pr_id"))
    comment = state.add_comment(workspace, slug, pr.id, need(body, "user", str), need(body, "raw", str))
    render = renderer_of(request)
    deliveries = await _send(request, body, pr.workspace, "pullrequest:comment_created",
                             events.comment_event(render, pr, comment))
    return web.json_response({**render.comment(comment), "deliveries": deliveries}, status=201)


async def sim_merge(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    user = need(body, "user", str)
    pr = state_of(request).merge(workspace, slug, path_int(request, "pr_id"), user)
    payload = events.pull_request_event(renderer_of(request), pr, user)
    return _pr_answer(request, pr, await _send(request, body, pr.workspace, "pullrequest:fulfilled", payload))


async def sim_decline(request: web.Request) -> web.Response:
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    user = need(body, "user", str)
    state_of(request).user(user)
    pr = state_of(request).decline(workspace, slug, path_int(request, "pr_id"), user)
    payload = events.pull_request_event(renderer_of(request), pr, user)
    return _pr_answer(request, pr, await _send(request, body, pr.workspace, "pullrequest:rejected", payload))


async def sim_commit_file(request: web.Request) -> web.Response:
    """`{path, content (null deletes), author?, branch?, message?}` → a commit and `repo:push`."""
    body = await json_body(request)
    workspace, slug = _repo_args(request)
    if "content" in body and body["content"] is not None and not isinstance(body["content"], str):
        raise SimulatorError(422, "'content' is text or null")
    author = _optional(body, "author", str)
    repo, branch, old, new = state_of(request).commit_file(
        workspace, slug, need(body, "path", str), body.get("content"), author=author,
        branch=_optional(body, "branch", str), message=_optional(body, "message", str),
    )
    payload = events.push_event(renderer_of(request), repo, branch, old, new, author)
    deliveries = await _send(request, body, repo.workspace, "repo:push", payload)
    return web.json_response({"hash": new.hash, "branch": branch, "deliveries": deliveries}, status=201)


async def sim_list_comments(request: web.Request) -> web.Response:
    workspace, slug = _repo_args(request)
    render = renderer_of(request)
    comments = state_of(request).comments_of(workspace, slug, path_int(request, "pr_id"))
    return web.json_response({"comments": [render.comment(c) for c in comments]})


async def sim_list_statuses(request: web.Request) -> web.Response:
    workspace, slug = _repo_args(request)
    render = renderer_of(request)
    statuses = state_of(request).statuses_of(workspace, slug, request.match_info["ref"])
    return web.json_response({"statuses": [render.status(s) for s in statuses]})


async def sim_list_hooks(request: web.Request) -> web.Response:
    """Unlike the API, the control view shows each hook's secret (tests check it is unique)."""
    render = renderer_of(request)
    hooks = state_of(request).hooks_of(request.match_info["workspace"])
    return web.json_response({"hooks": [{**render.hook(h), "secret": h.secret} for h in hooks]})


async def sim_list_deliveries(request: web.Request) -> web.Response:
    attempts = state_of(request).deliveries
    if "workspace" in request.query:
        attempts = [a for a in attempts if a.workspace == request.query["workspace"]]
    if "event_key" in request.query:
        attempts = [a for a in attempts if a.event_key == request.query["event_key"]]
    return web.json_response({"deliveries": [webhooks.attempt_json(a) for a in attempts]})


async def sim_resend_delivery(request: web.Request) -> web.Response:
    attempt = await webhooks.resend(state_of(request), request.app[SIM_SESSION], request.match_info["request_uuid"])
    return web.json_response(webhooks.attempt_json(attempt), status=201)


async def sim_delete_repository(request: web.Request) -> web.Response:
    workspace, slug = _repo_args(request)
    repo = state_of(request).remove_repository(workspace, slug)
    return web.json_response({"deleted": repo.full_name})


async def sim_clear_deliveries(request: web.Request) -> web.Response:
    state_of(request).deliveries.clear()
    state_of(request).delivery_bodies.clear()
    return web.json_response({"ok": True})


async def sim_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "provider": "bitbucket"})
