"""GitHub App authentication: App JWT → installation access tokens, cached per installation.

Tokens live only in this process's memory: losing them costs one refresh,
never correctness. No key or token is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import aiohttp
import jwt

log = logging.getLogger(__name__)

JWT_BACKDATE_SECONDS = 60  # GitHub's clock may run behind ours
JWT_LIFETIME_SECONDS = 540  # GitHub refuses more than 10 minutes
REFRESH_MARGIN_SECONDS = 300  # refresh 5 minutes before expiry

class AppJwtSource(Protocol):
    """Whatever can sign as the App (InstallationTokens does)."""

    def app_jwt(self) -> str: ...


# What every REST call to GitHub sends besides its Authorization.
API_HEADERS: Final = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "prgate",
}


def api_headers(token: str) -> dict[str, str]:
    """The headers of one REST call authorized by `token` (an App JWT or an installation token)."""
    return {**API_HEADERS, "Authorization": f"Bearer {token}"}



class GitHubAuthError(Exception):
    """GitHub refused to mint an installation token."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"installation token request failed with {status}: {message}")
        self.status = status
        self.headers = headers or {}


def app_jwt(app_id: str, private_key_pem: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now) - JWT_BACKDATE_SECONDS
    payload = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}
    return jwt.encode(payload, private_key_pem, algorithm="RS256")


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float


class InstallationTokens:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        app_id: str,
        private_key_pem: str,
        *,
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._api = api_url.rstrip("/")
        self._app_id = app_id
        self._key = private_key_pem
        self._clock = clock
        self._on_refresh = on_refresh
        self._tokens: dict[int, _Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def app_jwt(self) -> str:
        return app_jwt(self._app_id, self._key, self._clock())

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget a token GitHub refused (only if it is still the one we hold)."""
        held = self._tokens.get(installation_id)
        if held is not None and (token is None or held.value == token):
            del self._tokens[installation_id]

    async def get(self, installation_id: int) -> str:
        token = self._fresh(installation_id)
        if token is not None:
            return token
        # One refresh at a time per installation; waiters reuse its result.
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            token = self._fresh(installation_id)
            if token is not None:
                return token
            minted = await self._mint(installation_id)
            self._tokens[installation_id] = minted
            return minted.value

    def _fresh(self, installation_id: int) -> str | None:
        held = self._tokens.get(installation_id)
        if held is not None and held.expires_at - REFRESH_MARGIN_SECONDS > self._clock():
            return held.value
        return None

    async def _mint(self, installation_id: int) -> _Token:
        url = f"{self._api}/app/installations/{installation_id}/access_tokens"
        headers = api_headers(self.app_jwt())
        async with self._session.post(url, headers=headers) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                message = body.get("message", "") if isinstance(body, dict) else ""
                raise GitHubAuthError(resp.status, message, dict(resp.headers))
        if self._on_refresh is not None:
            self._on_refresh()
        expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00")).timestamp()
        log.info("minted installation token", extra={"installation_id": installation_id})
        return _Token(value=str(body["token"]), expires_at=expires)
