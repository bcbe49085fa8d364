"""Workspaces, the signed-in user, repository permissions and workspace hooks."""

from __future__ import annotations

import re

from aiohttp import web
from yarl import URL

from prgate.simulator.bitbucket.errors import ApiError
from prgate.simulator.bitbucket.http import (
    json_object,
    page,
    renderer_of,
    scoped_workspace,
    state_of,
    token_of,
)
from prgate.simulator.core.types import JsonDict

HOOK_EVENTS = frozenset({
    "pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected",
    "pullrequest:approved", "pullrequest:unapproved", "pullrequest:changes_request_created",
    "pullrequest:changes_request_removed", "pullrequest:comment_created", "pullrequest:comment_updated",
    "pullrequest:comment_deleted", "pullrequest:comment_resolved", "pullrequest:comment_reopened",
    "repo:push", "repo:fork", "repo:updated", "repo:commit_comment_created", "repo:commit_status_created",
    "repo:commit_status_updated", "repo:created", "repo:deleted", "repo:imported", "repo:transfer",
    "issue:created", "issue:updated", "issue:comment_created",
})

# BBQL, only what prgate asks: `field = "value"` terms joined by AND (field: user.account_id,
# user.uuid, user.nickname, permission).
_TERM = re.compile(r'^\s*(user\.account_id|user\.uuid|user\.nickname|permission)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')


async def get_workspace(request: web.Request) -> web.Response:
    return web.json_response(renderer_of(request).workspace(scoped_workspace(request)))


async def get_user(request: web.Request) -> web.Response:
    token = token_of(request)
    assert token.account_id is not None  # the middleware lets only user tokens through
    user = state_of(request).user(token.account_id)
    data = renderer_of(request).user(user)
    data.update({"created_on": "2020-01-01T00:00:00.000000+00:00", "is_staff": False, "location": None,
                 "has_2fa_enabled": None, "username": user.nickname})
    return web.json_response(data)


async def list_user_workspaces(request: web.Request) -> web.Response:
    """`GET /2.0/user/workspaces` (CHANGE-3022): the workspaces where the user holds a repository permission."""
    state = state_of(request)
    token = token_of(request)
    render = renderer_of(request)
    slugs = sorted({ws for (ws, _, account), _lvl in state.permissions.items() if account == token.account_id})
    items: list[JsonDict] = []
    for slug in slugs:
        ws = state.workspace(slug)
        admin = any(level == "admin" for (w, _, a), level in state.permissions.items()
                    if w == slug and a == token.account_id)
        items.append({"type": "workspace_access", "administrator": admin,
                      "workspace": {**render.workspace(ws), "type": "workspace_base"},
                      "links": {"self": {"href": f"{render.api}/user/workspaces/{slug}/permission"}}})
    return page(request, items)


def _bbql(query: str) -> list[tuple[str, str]]:
    terms = []
    for part in re.split(r"\s+AND\s+", query.strip()) if query.strip() else []:
        match = _TERM.match(part)
        if match is None:
            raise ApiError(400, f"Invalid query: {query}")
        terms.append((match.group(1), match.group(2).replace('\\"', '"').replace("\\\\", "\\")))
    return terms


async def list_repository_permissions(request: web.Request) -> web.Response:
    """`GET /2.0/workspaces/{ws}/permissions/repositories/{slug}[?q=…]`: effective permissions per user."""
    ws = scoped_workspace(request)
    state = state_of(request)
    repo = state.repository(ws.slug, request.match_info["repo_slug"])
    terms = _bbql(request.query.get("q", ""))
    render = renderer_of(request)
    items = []
    for (w, s, account_id), level in sorted(state.permissions.items()):
        if (w, s) != (repo.workspace, repo.slug):
            continue
        user = state.users[account_id]
        values = {"user.account_id": user.account_id, "user.uuid": user.uuid, "user.nickname": user.nickname,
                  "permission": level}
        if all(values[field] == value for field, value in terms):
            items.append(render.permission(repo, account_id, level))
    return page(request, items)


def _hook_body(body: JsonDict, *, partial: bool) -> JsonDict:
    """Validate a hook body as Bitbucket does: 400 with the fields that are wrong."""
    fields: dict[str, list[str]] = {}
    out: JsonDict = {}
    url = body.get("url")
    if url is not None or not partial:
        target = URL(url) if isinstance(url, str) else None
        if target is None or not target.is_absolute() or target.scheme not in ("http", "https"):
            fields["url"] = ["Enter a valid URL."]
        else:
            out["url"] = url
    events = body.get("events")
    if events is not None or not partial:
        if (not isinstance(events, list) or not events
                or not all(isinstance(e, str) and e in HOOK_EVENTS for e in events)):
            fields["events"] = ["Select at least one valid event."]
        else:
            out["events"] = list(dict.fromkeys(events))
    for key, kind in (("description", str), ("active", bool), ("secret", str)):
        if key in body and body[key] is not None:
            if not isinstance(body[key], kind):
                fields[key] = [f"Must be a {kind.__name__}."]
            else:
                out[key] = body[key]
    if isinstance(out.get("secret"), str) and len(out["secret"]) > 128:
        fields["secret"] = ["Ensure this value has at most 128 characters."]
    if fields:
        raise ApiError(400, "Bad request", detail=str(fields))
    return out


async def list_hooks(request: web.Request) -> web.Response:
    ws = scoped_workspace(request)
    render = renderer_of(request)
    return page(request, [render.hook(h) for h in state_of(request).hooks_of(ws.slug)])


async def create_hook(request: web.Request) -> web.Response:
    ws = scoped_workspace(request)
    values = _hook_body(await json_object(request), partial=False)
    hook = state_of(request).create_hook(
        ws.slug, url=values["url"], description=values.get("description", ""), active=values.get("active", True),
        secret=values.get("secret") or None, events=values["events"],
    )
    return web.json_response(renderer_of(request).hook(hook), status=201)


async def get_hook(request: web.Request) -> web.Response:
    ws = scoped_workspace(request)
    return web.json_response(renderer_of(request).hook(state_of(request).hook(ws.slug, request.match_info["uid"])))


async def update_hook(request: web.Request) -> web.Response:
    ws = scoped_workspace(request)
    hook = state_of(request).hook(ws.slug, request.match_info["uid"])
    values = _hook_body(await json_object(request), partial=True)
    for key in ("url", "description", "active", "events"):
        if key in values:
            setattr(hook, key, values[key])
    if "secret" in values:
        hook.secret = values["secret"] or None
    return web.json_response(renderer_of(request).hook(hook))


async def delete_hook(request: web.Request) -> web.Response:
    ws = scoped_workspace(request)
    state_of(request).delete_hook(ws.slug, request.match_info["uid"])
    return web.Response(status=204)
