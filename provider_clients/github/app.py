"""GitHub App credentials: the App JWT, installation access tokens cached per installation, the REST
headers and the private-key reader — once, for both services.

Tokens live only in the process's memory: losing them costs one mint, never correctness. No key or
token is ever logged. The clock is injected (the process edge), so the cache can be tested without
waiting. What a refused mint means is the caller's to say: `mint_installation_token` returns GitHub's
answer as it came, and the caller's `mint` function raises its own error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
import jwt

JWT_BACKDATE_SECONDS: Final = 60  # GitHub's clock may run behind ours
JWT_LIFETIME_SECONDS: Final = 540  # from the backdated iat: expires 8 minutes from now (GitHub allows 10)
TOKEN_REFRESH_MARGIN_SECONDS: Final = 300  # a token is replaced 5 minutes before it expires

# What every REST call to GitHub sends besides its Authorization.
API_HEADERS: Final = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "prgate",
}


def api_headers(token: str) -> dict[str, str]:
    """The headers of one REST call authorized by `token` (an App JWT or an installation token)."""
    return {**API_HEADERS, "Authorization": f"Bearer {token}"}


def read_private_key(inline: str, path: Path | None) -> str:
    """The App's private key from GITHUB_PRIVATE_KEY (`\\n` escapes allowed) or else the file at
    GITHUB_PRIVATE_KEY_PATH; "" when neither is set."""
    if inline:
        return inline.replace("\\n", "\n")
    if path is not None:
        return path.read_text()
    return ""


def app_jwt(app_id: str, private_key_pem: str, now: float | None = None) -> str:
    """The App's JWT (RS256, `iss` = the App id), backdated for clock skew."""
    issued = int(time.time() if now is None else now) - JWT_BACKDATE_SECONDS
    payload = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}
    return jwt.encode(payload, private_key_pem, algorithm="RS256")


class AppJwtSource(Protocol):
    """Whatever can sign as the App (`InstallationTokenCache` users do)."""

    def app_jwt(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class MintAnswer:
    """GitHub's answer to `POST /app/installations/{id}/access_tokens`, unjudged."""

    status: int
    body: Any  # the JSON (None when there was none)
    headers: Mapping[str, str]

    def token(self) -> Token:
        """The minted token of a 201 (KeyError / ValueError when the body lacks it)."""
        expires = datetime.fromisoformat(str(self.body["expires_at"]).replace("Z", "+00:00")).timestamp()
        return Token(value=str(self.body["token"]), expires_at=expires)


async def mint_installation_token(
    session: aiohttp.ClientSession, api_url: str, jwt_token: str, installation_id: int,
    timeout: aiohttp.ClientTimeout | None = None,
) -> MintAnswer:
    """Ask GitHub for an installation token with the App JWT; `timeout` None keeps the session's."""
    url = f"{api_url.rstrip('/')}/app/installations/{installation_id}/access_tokens"
    # aiohttp reads timeout=None as "no timeout at all", so it is passed only when given.
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    async with session.post(url, headers=api_headers(jwt_token), **options) as resp:
        body = await resp.json(content_type=None)
        return MintAnswer(resp.status, body, dict(resp.headers))


class InstallationTokenCache:
    """Installation tokens per installation, until TOKEN_REFRESH_MARGIN_SECONDS before they expire.
    One mint at a time per installation; whoever waited reuses its result."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[int, Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def get(self, installation_id: int, mint: Callable[[int], Awaitable[Token]]) -> str:
        token = self._fresh(installation_id)
        if token is not None:
            return token
        async with self._locks.setdefault(installation_id, asyncio.Lock()):
            token = self._fresh(installation_id)
            if token is not None:
                return token
            minted = await mint(installation_id)
            self._tokens[installation_id] = minted
            return minted.value

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget a token GitHub refused (only if it is still the one held)."""
        held = self._tokens.get(installation_id)
        if held is not None and (token is None or held.value == token):
            del self._tokens[installation_id]

    def _fresh(self, installation_id: int) -> str | None:
        held = self._tokens.get(installation_id)
        if held is not None and held.expires_at - TOKEN_REFRESH_MARGIN_SECONDS > self._clock():
            return held.value
        return None
