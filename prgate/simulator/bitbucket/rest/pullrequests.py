"""Pull requests, their comments, and decline. Writes made through the API send their webhooks
(``webhooks_on_api_changes``), as Bitbucket does for any author, a token's bot included."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.bitbucket import events
from prgate.simulator.bitbucket.errors import ApiError
from prgate.simulator.bitbucket.http import (
    json_object,
    page,
    path_int,
    renderer_of,
    scoped_repo,
    send_after,
    state_of,
    token_of,
)
from prgate.simulator.bitbucket.model import PrState

PR_STATES: tuple[PrState, ...] = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")


async def list_pull_requests(request: web.Request) -> web.Response:
    """`?state=` may repeat; only open PRs by default, as Bitbucket."""
    repo = scoped_repo(request)
    wanted = {s.upper() for s in request.query.getall("state", [])} or {"OPEN"}
    if not wanted <= set(PR_STATES):
        raise ApiError(400, f"Invalid state: {', '.join(sorted(wanted - set(PR_STATES)))}")
    render = renderer_of(request)
    pulls = [p for p in state_of(request).pulls_of(repo.workspace, repo.slug) if p.state in wanted]
    return page(request, [render.pull_request(p) for p in pulls])


async def get_pull_request(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    pr = state_of(request).pull_request(repo.workspace, repo.slug, path_int(request, "pr_id"))
    return web.json_response(renderer_of(request).pull_request(pr))


def _raw(body: dict[str, object]) -> str:
    content = body.get("content")
    raw = content.get("raw") if isinstance(content, dict) else None
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(400, "Bad request", detail="content.raw: This field is required.")
    if len(raw) > 32_768:
        raise ApiError(400, "Bad request", detail="content.raw: Ensure this value has at most 32768 characters.")
    return raw


async def list_comments(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    render = renderer_of(request)
    comments = state_of(request).comments_of(repo.workspace, repo.slug, path_int(request, "pr_id"))
    return page(request, [render.comment(c) for c in comments])


async def create_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    state = state_of(request)
    pr = state.pull_request(repo.workspace, repo.slug, path_int(request, "pr_id"))
    raw = _raw(await json_object(request))
    author = token_of(request).account_id
    assert author is not None
    comment = state.add_comment(repo.workspace, repo.slug, pr.id, author, raw)
    render = renderer_of(request)
    if state.config.webhooks_on_api_changes:
        send_after(request, repo.workspace, "pullrequest:comment_created", events.comment_event(render, pr, comment))
    return web.json_response(render.comment(comment), status=201)


async def get_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    comment = state_of(request).comment(repo.workspace, repo.slug, path_int(request, "pr_id"),
                                        path_int(request, "comment_id"))
    return web.json_response(renderer_of(request).comment(comment))


async def update_comment(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    raw = _raw(await json_object(request))
    comment = state_of(request).update_comment(repo.workspace, repo.slug, path_int(request, "pr_id"),
                                               path_int(request, "comment_id"), token_of(request).account_id, raw)
    return web.json_response(renderer_of(request).comment(comment))


async def decline(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    await json_object(request)  # Bitbucket takes `{}` (no message on Cloud); a body that is not JSON is a 400
    state = state_of(request)
    pr = state.decline(repo.workspace, repo.slug, path_int(request, "pr_id"), token_of(request).account_id)
    render = renderer_of(request)
    if state.config.webhooks_on_api_changes:
        send_after(request, repo.workspace, "pullrequest:rejected",
                   events.pull_request_event(render, pr, token_of(request).account_id))
    return web.json_response(render.pull_request(pr))
