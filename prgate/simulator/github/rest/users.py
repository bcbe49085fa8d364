"""Users by login and the installations a user token reaches."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.types import iso
from prgate.simulator.github import oauth
from prgate.simulator.github.errors import DOCS, ApiError
from prgate.simulator.github.http import (
    paginate,
    renderer_of,
    state_of,
)


async def get_user_by_login(request: web.Request) -> web.Response:
    """``GET /users/{username}``: the public profile of whoever holds the login now."""
    state = state_of(request)
    user = state.find_user(request.match_info["username"])
    if user is None:
        raise ApiError(404, "Not Found", documentation_url=f"{DOCS}/users/users#get-a-user")
    data = renderer_of(request).user(user)
    created = iso(state.now())
    data.update({
        "name": None, "company": None, "blog": "", "location": None, "email": None, "hireable": None,
        "bio": None, "twitter_username": None, "public_repos": 0, "public_gists": 0, "followers": 0,
        "following": 0, "created_at": created, "updated_at": created,
    })
    return web.json_response(data)


async def list_user_installations(request: web.Request) -> web.Response:
    """``GET /user/installations`` with a user token: ``{"total_count", "installations"}``."""
    user = request.app[oauth.SIM_OAUTH].user_for(oauth.bearer_token(request))
    if user is None:
        raise ApiError(401, "Bad credentials")
    reachable = state_of(request).user_installations(user.login)
    page, headers = paginate(request, reachable)
    render = renderer_of(request)
    return web.json_response(
        {"total_count": len(reachable), "installations": [render.installation(i) for i in page]}, headers=headers
    )
