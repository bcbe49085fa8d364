"""Workspace access tokens for the worker, asked from the backend and kept in memory per tenant.

The backend holds each workspace's token encrypted; a worker about to act on a workspace asks for it
(`POST /internal/v2/bitbucket/tenants/{id}/token`, signed) and keeps it for the answer's
`ttl_seconds`. A 401 from Bitbucket drops it (`invalidate`) so the next ask fetches the current one.
Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared_contracts.bitbucket import BitbucketTokenResponse

# None: the backend answered 404, the workspace is not connected (any more).
FetchToken = Callable[[int], Awaitable[BitbucketTokenResponse | None]]


class WorkspaceDisconnected(Exception):
    """The backend has no token for this tenant: the workspace was disconnected (or never connected)."""

    def __init__(self, tenant_id: int) -> None:
        super().__init__(f"Bitbucket workspace of tenant {tenant_id} is not connected: the backend has no token for it")
        self.tenant_id = tenant_id


class TokenUnavailable(Exception):
    """The backend could not be asked for the token (down, 5xx, timeout): worth retrying."""


@dataclass(frozen=True, slots=True)
class _Held:
    token: str
    expires_at: float


class WorkspaceTokens:
    """One cached token per tenant; concurrent asks for one tenant share a single backend call."""

    def __init__(self, fetch: FetchToken, *, clock: Callable[[], float] = time.monotonic,
                 on_fetch: Callable[[], None] | None = None) -> None:
        self._fetch = fetch
        self._clock = clock
        self._on_fetch = on_fetch
        self._held: dict[int, _Held] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def get(self, tenant_id: int) -> str:
        held = self._held.get(tenant_id)
        if held is not None and held.expires_at > self._clock():
            return held.token
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            held = self._held.get(tenant_id)
            if held is not None and held.expires_at > self._clock():
                return held.token
            try:
                answer = await self._fetch(tenant_id)
            except Exception as exc:
                raise TokenUnavailable(f"the backend's token route failed: {type(exc).__name__}: {exc}") from exc
            if self._on_fetch is not None:
                self._on_fetch()
            if answer is None:
                self._held.pop(tenant_id, None)
                raise WorkspaceDisconnected(tenant_id)
            self._held[tenant_id] = _Held(answer.token, self._clock() + answer.ttl_seconds)
            return answer.token

    def invalidate(self, tenant_id: int, token: str) -> None:
        """Drop the tenant's token if it is still `token` (another task may have fetched a newer one)."""
        held = self._held.get(tenant_id)
        if held is not None and held.token == token:
            del self._held[tenant_id]
