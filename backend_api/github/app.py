"""The backend's own GitHub App client, for the owner API: "is this user an admin of this repository?".

The App authenticates with a short-lived JWT (RS256, ``iss`` = the App id), trades it for an
installation access token (``POST /app/installations/{id}/access_tokens``) and asks
``GET /repositories/{id}/collaborators/{login}/permission`` with that token — by repository id,
never by name: a renamed repository's old name can be taken by another repository, whose admin
must not pass for an admin of the first. Tokens are cached
per installation until 5 minutes before they expire; permission answers for
``PERMISSION_TTL_SECONDS`` per (repository, login), so a page of owner API calls costs GitHub one
request. Everything lives in this process's memory only; no key or token is ever logged.

It shares the application's one ``aiohttp.ClientSession`` (``HTTP_CLIENT``). The clock is injected
(the process edge), so the caches can be tested without waiting.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from backend_api.github.api import GitHubUnavailable
from backend_api.keys import HTTP_CLIENT, SETTINGS
from backend_api.settings import BackendSettings
from provider_clients.github.app import (
    InstallationTokenCache,
    MintAnswer,
    Token,
    api_headers,
    app_jwt,
    read_private_key,
)

log = logging.getLogger(__name__)

PERMISSION_TTL_SECONDS = 60.0
# Anything short of admin is kept longer: refusals are what a stranger probing repositories gets.
REFUSAL_TTL_SECONDS = 300.0
PERMISSION_CACHE_MAX = 10_000
GITHUB_TIMEOUT = aiohttp.ClientTimeout(total=10)
# What GitHub's `permission` field can hold (maintain is folded into write, triage into read).
_PERMISSIONS = frozenset({"admin", "maintain", "write", "triage", "read", "none"})


class GitHubAppError(Exception):
    """The permission could not be established."""


class AppNotConfigured(GitHubAppError):
    """GITHUB_APP_ID / GITHUB_PRIVATE_KEY(_PATH) are not set on the backend."""


class InstallationRefused(GitHubAppError):
    """GitHub would not mint a token for the installation (suspended: 403; uninstalled: 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"installation token refused ({status}): {message}")
        self.status = status


def private_key_pem(settings: BackendSettings) -> str:
    """The App's private key from GITHUB_PRIVATE_KEY or the file at GITHUB_PRIVATE_KEY_PATH; "" when
    neither is set (read the way the bot reads it: provider_clients)."""
    return read_private_key(settings.github_private_key.get_secret_value(), settings.github_private_key_path)


@dataclass(frozen=True, slots=True)
class FileBlob:
    sha: str
    content: bytes


@dataclass(frozen=True, slots=True)
class _Permission:
    value: str
    expires_at: float
    user_id: int | None = None  # the account GitHub answered about


def _repo_path(repo_id: int) -> str:
    return f"/repositories/{int(repo_id)}"


class GitHubApp:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        app_id: str,
        key_pem: str,
        *,
        clock: Callable[[], float] = time.time,
        permission_ttl: float = PERMISSION_TTL_SECONDS,
    ) -> None:
        self._session = session
        self._api = api_url.rstrip("/")
        self._app_id = app_id
        self._key = key_pem
        self._clock = clock
        self._permission_ttl = permission_ttl
        self._tokens = InstallationTokenCache(clock)
        self._permissions: dict[tuple[int, str], _Permission] = {}

    @classmethod
    def from_settings(cls, settings: BackendSettings, session: aiohttp.ClientSession) -> GitHubApp:
        return cls(session, settings.github_api_url, settings.github_app_id, private_key_pem(settings))

    @property
    def configured(self) -> bool:
        return bool(self._app_id and self._key)

    # ---- installation tokens ---------------------------------------------------------------------

    async def installation_token(self, installation_id: int) -> str:
        return await self._tokens.get(installation_id, self._mint)

    def invalidate_token(self, installation_id: int, token: str) -> None:
        self._tokens.invalidate(installation_id, token)

    async def _mint(self, installation_id: int) -> Token:
        if not self.configured:
            raise AppNotConfigured("GITHUB_APP_ID and GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH are not set")
        url = f"{self._api}/app/installations/{installation_id}/access_tokens"
        headers = api_headers(app_jwt(self._app_id, self._key, self._clock()))
        status, body = await self._call("POST", url, headers)
        if status in (403, 404):
            raise InstallationRefused(status, str(body.get("message", "")) if isinstance(body, dict) else "")
        if status != 201 or not isinstance(body, dict):
            raise GitHubUnavailable(f"installation token request answered {status}")
        try:
            minted = MintAnswer(status, body, {}).token()
        except (KeyError, ValueError):
            raise GitHubUnavailable("installation token answer has no token or expires_at") from None
        log.info("minted installation token", extra={"installation_id": installation_id})
        return minted

    # ---- permissions ----------------------------------------------------------------------------

    async def permission(self, installation_id: int, repo_id: int, login: str, user_id: int | None = None) -> str:
        """``login``'s permission on the repository as GitHub reports it (admin, write, read, none);
        a user GitHub does not know answers ``none``. With ``user_id`` (the signed-in user's), an
        answer about another account — the login was renamed and taken by someone else since the
        sign-in — is ``none`` too."""
        key = (repo_id, login.lower())
        now = self._clock()
        cached = self._permissions.get(key)
        if cached is None or cached.expires_at <= now:
            value, answered_id = await self._fetch_permission(installation_id, repo_id, login)
            if len(self._permissions) >= PERMISSION_CACHE_MAX:
                self._permissions = {k: v for k, v in self._permissions.items() if v.expires_at > now}
                if len(self._permissions) >= PERMISSION_CACHE_MAX:
                    self._permissions.clear()
            ttl = self._permission_ttl if value == "admin" else max(self._permission_ttl, REFUSAL_TTL_SECONDS)
            cached = _Permission(value, now + ttl, answered_id)
            self._permissions[key] = cached
        if user_id is not None and cached.user_id != user_id:
            log.warning("permission answer is about another account than the session's (login renamed)",
                        extra={"repo_id": repo_id, "github_user_id": user_id, "answered_user_id": cached.user_id})
            return "none"
        return cached.value

    async def _fetch_permission(self, installation_id: int, repo_id: int, login: str) -> tuple[str, int | None]:
        url = f"{self._api}{_repo_path(repo_id)}/collaborators/{quote(login, safe='')}/permission"
        status, body = await self._get_as_installation(installation_id, url, "permission check")
        if status == 404:
            return "none", None
        permission = body.get("permission") if isinstance(body, dict) else None
        if status != 200 or permission not in _PERMISSIONS:
            raise GitHubUnavailable(f"permission check answered {status}")
        user = body.get("user")
        answered = user.get("id") if isinstance(user, dict) else None
        return str(permission), answered if isinstance(answered, int) and not isinstance(answered, bool) else None

    # ---- users (docs/security.md, "Rights keyed by login, not user id") ----------------------------------------------

    async def user_id(self, installation_id: int, login: str) -> int | None:
        """The id of whoever holds ``login`` on GitHub now (``GET /users/{login}``); None: nobody."""
        url = f"{self._api}/users/{quote(login, safe='')}"
        status, body = await self._get_as_installation(installation_id, url, "user lookup")
        if status == 404:
            return None
        found = body.get("id") if isinstance(body, dict) else None
        if status != 200 or not isinstance(found, int) or isinstance(found, bool):
            raise GitHubUnavailable(f"user lookup answered {status}")
        return found

    # ---- repository files (the config file, docs/configuration.md) ----------------------------------

    async def file_contents(
        self, installation_id: int, path: str, *, repo_id: int | None = None, full_name: str | None = None,
        ref: str | None = None,
    ) -> FileBlob | None:
        """A file on the repository's default branch (or ``ref``), by repository id — or by name for
        a file of another repository (`_extends`, the organization's `.github`); None: no such file,
        or a repository this installation cannot see (GitHub answers both 404)."""
        where = _repo_path(repo_id) if repo_id is not None else f"/repos/{quote(str(full_name), safe='/')}"
        url = f"{self._api}{where}/contents/{quote(path, safe='/')}"
        if ref:
            url += f"?ref={quote(ref, safe='')}"
        status, body = await self._get_as_installation(installation_id, url, "contents read")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise GitHubUnavailable(f"contents read answered {status}")
        if body.get("type") != "file" or body.get("encoding") != "base64":
            return None  # a directory or a submodule by that name is not a config file
        try:
            return FileBlob(str(body["sha"]), base64.b64decode(str(body.get("content", "")), validate=False))
        except (KeyError, ValueError):
            raise GitHubUnavailable("contents answer has no sha or content") from None

    async def _get_as_installation(self, installation_id: int, url: str, what: str) -> tuple[int, Any]:
        """GET with the installation's token; a 401 (revoked or expired early) mints a new one, once."""
        for attempt in (1, 2):
            token = await self.installation_token(installation_id)
            status, body = await self._call("GET", url, api_headers(token))
            if status == 401 and attempt == 1:
                self.invalidate_token(installation_id, token)
                continue
            if status == 401:
                raise GitHubUnavailable(f"{what}: GitHub refused a fresh installation token")
            return status, body
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, headers: dict[str, str]) -> tuple[int, Any]:
        try:
            async with self._session.request(method, url, headers=headers, timeout=GITHUB_TIMEOUT) as resp:
                try:
                    body: Any = await resp.json(content_type=None)
                except ValueError:
                    body = None
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GitHubUnavailable(f"{method} {url.split('?')[0]} unreachable: {type(exc).__name__}") from None


GITHUB_APP = web.AppKey("github_app", GitHubApp)


async def github_app_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry; must come after the one that opens ``HTTP_CLIENT``."""
    app[GITHUB_APP] = GitHubApp.from_settings(app[SETTINGS], app[HTTP_CLIENT])
    yield
