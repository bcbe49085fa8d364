"""GitHub-specific ``/_sim/`` control routes: build a scenario (installations, repositories, pull
requests, comments, permissions, users), inspect tokens and deliveries, send webhooks."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.app import SIM_SESSION
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.http import json_body, need
from prgate.simulator.core.types import JsonDict
from prgate.simulator.github import events, oauth
from prgate.simulator.github.http import (
    deliver_kept,
    full_name_of,
    path_int,
    renderer_of,
    state_of,
)
from prgate.simulator.github.model import SimApp


async def sim_send(request: web.Request, body: JsonDict, event: str, payload: JsonDict) -> list[JsonDict]:
    """Deliver now (awaited) when the /_sim/ request asked for it with ``webhook`` (true or, for pull
    requests, the action) and optionally ``webhook_url`` (default: the configured receiver)."""
    if not body.get("webhook") and not body.get("webhook_url"):
        return []
    state = state_of(request)
    url = body.get("webhook_url")
    if not isinstance(url, str) or not url:
        url = None
        if not state.config.webhook_url:
            raise SimulatorError(422, "webhook requested but no webhook_url given or configured")
    delivery = await deliver_kept(state, request.app[SIM_SESSION], event, payload, url=url)
    return [delivery.to_json()]


async def sim_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "app_id": state_of(request).config.app_id})




async def sim_list_installations(request: web.Request) -> web.Response:
    render = renderer_of(request)
    state = state_of(request)
    return web.json_response(
        [
            {**render.installation(i), "repositories": [r.full_name for r in state.installation_repositories(i.id)]}
            for i in sorted(state.installations.values(), key=lambda i: i.id)
        ]
    )


async def sim_create_installation(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    account = need(body, "account", dict)
    installation = state.add_installation(
        need(body, "id", int),
        account_login=need(account, "login", str),
        account_id=account.get("id"),
        account_type=account.get("type", "Organization"),
        repository_selection=body.get("repository_selection", "selected"),
        permissions=body.get("permissions"),
    )
    repos = [
        state.add_repository(
            installation.id, need(r, "id", int), need(r, "full_name", str), bool(r.get("private", False))
        )
        for r in body.get("repositories") or []
    ]
    render = renderer_of(request)
    deliveries = await sim_send(
        request,
        body,
        "installation",
        events.installation_event(render, installation, "created", repos),
    )
    return web.json_response({**render.installation(installation), "deliveries": deliveries}, status=201)


async def sim_update_installation(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    installation_id = path_int(request, "installation_id")
    suspended = need(body, "suspended", bool)
    installation = state.set_suspended(installation_id, suspended)
    render = renderer_of(request)
    deliveries = await sim_send(
        request,
        body,
        "installation",
        events.installation_event(render, installation, "suspend" if suspended else "unsuspend"),
    )
    return web.json_response({**render.installation(installation), "deliveries": deliveries})


async def sim_delete_installation(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    installation_id = path_int(request, "installation_id")
    installation = state.get_installation(installation_id)
    render = renderer_of(request)
    payload = events.installation_event(render, installation, "deleted")
    state.remove_installation(installation_id)
    deliveries = await sim_send(request, body, "installation", payload)
    return web.json_response({**payload["installation"], "deliveries": deliveries})


async def sim_add_repository(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    installation_id = path_int(request, "installation_id")
    repo = state.add_repository(
        installation_id,
        need(body, "id", int),
        need(body, "full_name", str),
        private=bool(body.get("private", False)),
        default_branch=body.get("default_branch") or "main",
    )
    render = renderer_of(request)
    deliveries = await sim_send(
        request,
        body,
        "installation_repositories",
        events.installation_repositories_event(render, state.installations[installation_id], "added", added=[repo]),
    )
    return web.json_response({**render.repository(repo), "deliveries": deliveries}, status=201)


async def sim_remove_repository(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    installation_id = path_int(request, "installation_id")
    repo = state.remove_repository(installation_id, path_int(request, "repo_id"))
    render = renderer_of(request)
    deliveries = await sim_send(
        request,
        body,
        "installation_repositories",
        events.installation_repositories_event(
            render, state.installations[installation_id], "removed", removed=[repo]
        ),
    )
    return web.json_response({"id": repo.id, "full_name": repo.full_name, "deliveries": deliveries})


async def sim_rename_repository(request: web.Request) -> web.Response:
    """Rename a repository (``{"full_name": "owner/new"}``); its old name is free for a new one."""
    body = await json_body(request)
    state = state_of(request)
    repo, previous = state.rename_repository(path_int(request, "repo_id"), need(body, "full_name", str))
    render = renderer_of(request)
    deliveries = await sim_send(
        request, body, "repository", events.repository_renamed_event(render, repo, previous)
    )
    return web.json_response({**render.repository(repo), "previous_full_name": previous, "deliveries": deliveries})


def _pr_action(created: bool, before: JsonDict | None, after: JsonDict) -> str:
    if created or before is None:
        return "opened"
    if before["state"] != after["state"]:
        return "closed" if after["state"] == "closed" else "reopened"
    if before["draft"] != after["draft"]:
        return "converted_to_draft" if after["draft"] else "ready_for_review"
    if before["head"]["sha"] != after["head"]["sha"]:
        return "synchronize"
    return "edited"


async def sim_upsert_pull_request(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    full_name = need(body, "repo", str)
    number = body.get("number")
    author = body.get("author") or {}
    if not isinstance(author, dict):
        raise SimulatorError(422, "'author' must be an object")
    render = renderer_of(request)
    before = None
    if isinstance(number, int):
        repo = state.repo_by_name(full_name)
        existing = state.pulls.get((repo.id, number))
        before = render.pull_request(existing) if existing else None
    if body.get("state") not in (None, "open", "closed"):
        raise SimulatorError(422, "state must be open or closed")
    pr, created = state.upsert_pull_request(
        full_name,
        number if isinstance(number, int) else None,
        author_login=author.get("login"),
        author_id=author.get("id"),
        author_type=author.get("type"),
        author_association=body.get("author_association"),
        state=body.get("state"),
        draft=body.get("draft"),
        merged=body.get("merged"),
        head_sha=body.get("head_sha"),
        head_ref=body.get("head_ref"),
        base_ref=body.get("base_ref"),
        title=body.get("title"),
        body=body.get("body"),
    )
    after = render.pull_request(pr)
    wanted = body.get("webhook")
    action = wanted if isinstance(wanted, str) else _pr_action(created, before, after)
    deliveries = await sim_send(request, body, "pull_request", events.pull_request_event(render, pr, action))
    return web.json_response({**after, "deliveries": deliveries}, status=201 if created else 200)


async def sim_get_pull_request(request: web.Request) -> web.Response:
    pr = state_of(request).get_pull_request(full_name_of(request), path_int(request, "pull_number"))
    return web.json_response(renderer_of(request).pull_request(pr))


async def sim_list_comments(request: web.Request) -> web.Response:
    comments = state_of(request).comments_for(full_name_of(request), path_int(request, "pull_number"))
    render = renderer_of(request)
    return web.json_response([render.comment(c) for c in comments])


async def sim_list_statuses(request: web.Request) -> web.Response:
    statuses = state_of(request).statuses_for(full_name_of(request), request.match_info["ref"])
    render = renderer_of(request)
    return web.json_response([render.status(s) for s in statuses])


async def sim_set_permission(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    username = request.match_info["username"]
    state.set_permission(
        full_name_of(request), username, need(body, "permission", str), body.get("id"), body.get("type")
    )
    role, user = state.permission_of(full_name_of(request), username)
    return web.json_response(renderer_of(request).collaborator_permission(role, user))



async def sim_tokens(request: web.Request) -> web.Response:
    state = state_of(request)
    active: dict[str, int] = {}
    for token in list(state.tokens):
        info = state.token_info(token)
        if info is not None:
            active[str(info.installation_id)] = active.get(str(info.installation_id), 0) + 1
    return web.json_response({"issued": {str(k): v for k, v in sorted(state.tokens_issued.items())}, "active": active})


async def sim_expire_tokens(request: web.Request) -> web.Response:
    body = await json_body(request)
    installation_id = body.get("installation_id")
    state_of(request).expire_tokens(installation_id if isinstance(installation_id, int) else None)
    return web.json_response({"ok": True})


async def sim_list_deliveries(request: web.Request) -> web.Response:
    return web.json_response([d.to_json() for d in state_of(request).deliveries])


async def sim_send_webhook(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    url = body.get("url") or state.config.webhook_url
    if not isinstance(url, str) or not url:
        raise SimulatorError(422, "'url' is required when SimulatorConfig.webhook_url is not set")
    secret = body.get("secret")
    delivery = await deliver_kept(
        state,
        request.app[SIM_SESSION],
        need(body, "event", str),
        need(body, "payload", dict),
        url=url,
        secret=secret if isinstance(secret, str) else None,
        delivery_id=body.get("delivery_id"),
    )
    return web.json_response(delivery.to_json(), status=201)



async def sim_register_user(request: web.Request) -> web.Response:
    """``POST /_sim/users {"login", "id", "type"?}``: sign up a new account under a free login."""
    body = await json_body(request)
    user = state_of(request).register_user(need(body, "login", str), need(body, "id", int), body.get("type", "User"))
    return web.json_response(renderer_of(request).user(user), status=201)


async def sim_rename_user(request: web.Request) -> web.Response:
    """``PATCH /_sim/users/{login} {"login": new}``: the user changes their username; the old login is
    free at once, and the user's OAuth tokens stay theirs."""
    body = await json_body(request)
    old = request.match_info["login"]
    user = state_of(request).rename_user(old, need(body, "login", str))
    tokens = request.app[oauth.SIM_OAUTH].tokens
    for token, login in list(tokens.items()):
        if login.lower() == old.lower():
            tokens[token] = user.login
    return web.json_response(renderer_of(request).user(user))


async def sim_add_comment(request: web.Request) -> web.Response:
    """Post a comment on a PR as any author: a person, a foreign bot, or another App
    (``{"body", "user": {"login", "id", "type"}, "app": {"id", "slug", "name"}}``; an ``app`` without
    ``user`` writes as that App's bot user ``<slug>[bot]``). ``"webhook": true`` delivers the
    ``issue_comment`` ``created`` event GitHub sends for it (e.g. a ``/prgate recheck``)."""
    body = await json_body(request)
    state = state_of(request)
    text = need(body, "body", str)
    app_spec = body.get("app")
    via_app: SimApp | None = None
    if app_spec is not None:
        if not isinstance(app_spec, dict):
            raise SimulatorError(422, "'app' must be an object")
        slug = need(app_spec, "slug", str)
        via_app = SimApp(
            id=need(app_spec, "id", int), slug=slug, name=str(app_spec.get("name") or slug),
            owner=state.ensure_user(f"{slug}-owner", user_type="Organization"),
        )
    user_spec = body.get("user")
    if user_spec is not None:
        if not isinstance(user_spec, dict):
            raise SimulatorError(422, "'user' must be an object")
        user_id = user_spec.get("id")
        user = state.ensure_user(
            need(user_spec, "login", str), user_id if isinstance(user_id, int) else None,
            str(user_spec.get("type") or "User"),
        )
    elif via_app is not None:
        user = state.ensure_user(via_app.bot_login, via_app.id + 41_000_000, "Bot")
    else:
        raise SimulatorError(422, "'user' or 'app' is required")
    full_name, number = full_name_of(request), path_int(request, "pull_number")
    comment = state.add_comment(full_name, number, text, user=user, via_app=via_app)
    render = renderer_of(request)
    payload = events.issue_comment_event(render, state.get_pull_request(full_name, number), comment)
    deliveries = await sim_send(request, body, "issue_comment", payload)
    return web.json_response({**render.comment(comment), "deliveries": deliveries}, status=201)


async def sim_commit_file(request: web.Request) -> web.Response:
    """Commit one file to the repository's default branch: ``{"path", "content"}`` (text; null
    deletes it), optional ``message``, ``author`` (a login) and ``webhook`` (send GitHub's ``push``)."""
    body = await json_body(request)
    state = state_of(request)
    full_name = full_name_of(request)
    path = need(body, "path", str).strip("/")
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise SimulatorError(422, "content must be a string or null")
    author = body.get("author") or full_name.split("/", 1)[0]
    if not isinstance(author, str):
        raise SimulatorError(422, "author must be a login")
    repo = state.repo_by_name(full_name)
    history = state.commits.get(repo.id, [])
    before = history[-1].sha if history else "0" * 40
    commit = state.commit_file(full_name, path, None if content is None else content.encode(),
                               str(body.get("message") or f"Update {path}"), author)
    payload = events.push_event(renderer_of(request), repo, before, commit, state.ensure_user(author))
    deliveries = await sim_send(request, body, "push", payload)
    return web.json_response({"sha": commit.sha, "path": path, "deliveries": deliveries}, status=201)
