"""Sign in with GitHub, the server side of the OAuth web flow: trade the code, ask who and which installations.

The token is used for these two questions and forgotten; the pages around it are ``web/auth.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from backend_api.github.api import GitHubUnavailable, api_headers
from backend_api.settings import BackendSettings

log = logging.getLogger(__name__)

GITHUB_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True, slots=True)
class GitHubUser:
    id: int
    login: str


class SignInRefused(Exception):
    """GitHub refused the code (expired, used, or not ours): the user should start again (400)."""


def callback_url(settings: BackendSettings) -> str:
    return f"{settings.public_url.rstrip('/')}/auth/github/callback"



async def exchange_code(http: aiohttp.ClientSession, settings: BackendSettings, code: str) -> str:
    """The access token for ``code``; it is used once (``fetch_user``) and never stored."""
    url = f"{settings.github_web_url.rstrip('/')}/login/oauth/access_token"
    data = {
        "client_id": settings.github_client_id,
        "client_secret": settings.github_client_secret.get_secret_value(),
        "code": code,
        "redirect_uri": callback_url(settings),
    }
    try:
        async with http.post(url, data=data, headers={"Accept": "application/json"}, timeout=GITHUB_TIMEOUT) as resp:
            if resp.status != 200:
                raise GitHubUnavailable(f"token endpoint answered {resp.status}")
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise GitHubUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise GitHubUnavailable("token endpoint answered something that is not a JSON object")
    error = body.get("error")
    if error in ("bad_verification_code", "redirect_uri_mismatch"):
        raise SignInRefused(str(error))
    if error is not None:
        raise GitHubUnavailable(f"token endpoint refused: {error}")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise GitHubUnavailable("token endpoint answered no access_token")
    return token


async def fetch_user(http: aiohttp.ClientSession, settings: BackendSettings, token: str) -> GitHubUser:
    url = f"{settings.github_api_url.rstrip('/')}/user"
    headers = api_headers(token)
    try:
        async with http.get(url, headers=headers, timeout=GITHUB_TIMEOUT) as resp:
            if resp.status != 200:
                raise GitHubUnavailable(f"GET /user answered {resp.status}")
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise GitHubUnavailable(f"GET /user unreachable: {type(exc).__name__}") from None
    user_id = body.get("id") if isinstance(body, dict) else None
    login = body.get("login") if isinstance(body, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not isinstance(login, str) or not login:
        raise GitHubUnavailable("GET /user answered no id and login")
    return GitHubUser(id=user_id, login=login)


# At most this many of the user's installations go into the cookie (it must stay under 4 KiB).
MAX_SESSION_INSTALLATIONS = 200
_PER_PAGE = 100


async def fetch_user_installations(http: aiohttp.ClientSession, settings: BackendSettings, token: str) -> list[int]:
    """Ids of this App's installations the user's token reaches (``GET /user/installations``)."""
    headers = api_headers(token)
    url = f"{settings.github_api_url.rstrip('/')}/user/installations"
    ids: list[int] = []
    for page in range(1, MAX_SESSION_INSTALLATIONS // _PER_PAGE + 1):
        try:
            async with http.get(url, headers=headers, params={"per_page": _PER_PAGE, "page": page},
                                timeout=GITHUB_TIMEOUT) as resp:
                if resp.status != 200:
                    raise GitHubUnavailable(f"GET /user/installations answered {resp.status}")
                body: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise GitHubUnavailable(f"GET /user/installations unreachable: {type(exc).__name__}") from None
        listed = body.get("installations") if isinstance(body, dict) else None
        total = body.get("total_count") if isinstance(body, dict) else None
        if not isinstance(listed, list) or not isinstance(total, int):
            raise GitHubUnavailable("GET /user/installations answered no installations and total_count")
        ids.extend(i["id"] for i in listed if isinstance(i, dict) and isinstance(i.get("id"), int))
        if len(ids) >= total or len(listed) < _PER_PAGE:
            return ids
    log.warning("the user reaches more installations than a session holds; the rest are left out",
                extra={"kept": len(ids)})
    return ids[:MAX_SESSION_INSTALLATIONS]
