"""The HTML pages a gate comment links to: ``/{workspace}/{slug}/pull-requests/{id}``."""

from __future__ import annotations

import html

from aiohttp import web

from prgate.simulator.bitbucket.errors import ApiError
from prgate.simulator.bitbucket.http import state_of


async def pull_request_page(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        pr_id = int(request.match_info["pr_id"])
        pr = state.pull_request(request.match_info["workspace"], request.match_info["repo_slug"], pr_id)
    except (ValueError, ApiError):
        return web.Response(text="<!doctype html><title>Not found</title><h1>Not found</h1>", status=404,
                            content_type="text/html")
    author = state.users.get(pr.author)
    comments = "".join(f"<li>{html.escape(c.raw)}</li>"
                       for c in state.comments_of(pr.workspace, pr.repo, pr.id))
    document = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(pr.title)}</title></head>"
        f"<body><h1>{html.escape(pr.title)} <small>#{pr.id}</small></h1>"
        f"<p>{html.escape(pr.state)} · by {html.escape(author.display_name if author else pr.author)}"
        f"{' · draft' if pr.draft else ''}</p><ul>{comments}</ul></body></html>"
    )
    return web.Response(text=document, content_type="text/html")
