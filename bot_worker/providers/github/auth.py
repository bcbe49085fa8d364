"""The bot's GitHub App authentication: App JWT → installation access tokens, cached per installation.

The JWT, the token cache and the headers are the shared `provider_clients.github.app`; this module
adds the bot's reading of a refused mint (`GitHubAuthError`, classified like any GitHub answer) and
its refresh counter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp

from provider_clients.github.app import (
    AppJwtSource,
    InstallationTokenCache,
    Token,
    app_jwt,
    mint_installation_token,
)

# Jobs type the App's signer by this, without reaching past the provider folder.
__all__ = ["AppJwtSource", "GitHubAuthError", "InstallationTokens"]

log = logging.getLogger(__name__)


class GitHubAuthError(Exception):
    """GitHub refused to mint an installation token."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"installation token request failed with {status}: {message}")
        self.status = status
        self.headers = headers or {}


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
        self._cache = InstallationTokenCache(clock)

    def app_jwt(self) -> str:
        return app_jwt(self._app_id, self._key, self._clock())

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget a token GitHub refused (only if it is still the one we hold)."""
        self._cache.invalidate(installation_id, token)

    async def get(self, installation_id: int) -> str:
        return await self._cache.get(installation_id, self._mint)

    async def _mint(self, installation_id: int) -> Token:
        answer = await mint_installation_token(self._session, self._api, self.app_jwt(), installation_id)
        if answer.status != 201:
            message = answer.body.get("message", "") if isinstance(answer.body, dict) else ""
            raise GitHubAuthError(answer.status, message, dict(answer.headers))
        if self._on_refresh is not None:
            self._on_refresh()
        token = answer.token()
        log.info("minted installation token", extra={"installation_id": installation_id})
        return token
