"""`GET /repos/{owner}/{repo}/contents/{path}` (and by repository id): one file, base64, with its
blob sha; 404 when absent or when the ref names no commit, as GitHub answers."""

from __future__ import annotations

import base64

from aiohttp import web

from prgate.simulator.github.errors import ApiError
from prgate.simulator.github.http import require, scoped_repo, state_of
from prgate.simulator.github.model import blob_sha


def _wrapped(content: bytes) -> str:
    """GitHub wraps the base64 at 60 characters, with a trailing newline."""
    text = base64.b64encode(content).decode()
    return "".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60))


async def get_contents(request: web.Request) -> web.Response:
    repo = scoped_repo(request)
    require(request, "read", "contents")
    path = request.match_info["path"].strip("/")
    content = state_of(request).file_at(repo.id, path, request.query.get("ref") or None)
    if content is None:
        raise ApiError(404, "Not Found")
    sha = blob_sha(content)
    api = f"{request.url.origin()}/repos/{repo.full_name}"
    ref = request.query.get("ref") or repo.default_branch
    html = f"https://github.com/{repo.full_name}/blob/{ref}/{path}"
    return web.json_response({
        "type": "file", "encoding": "base64", "size": len(content), "name": path.rsplit("/", 1)[-1],
        "path": path, "content": _wrapped(content), "sha": sha,
        "url": f"{api}/contents/{path}?ref={ref}", "git_url": f"{api}/git/blobs/{sha}", "html_url": html,
        "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}",
        "_links": {"self": f"{api}/contents/{path}?ref={ref}", "git": f"{api}/git/blobs/{sha}", "html": html},
    })
