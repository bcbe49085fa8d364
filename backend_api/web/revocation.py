"""The signed-in session of a request, unless it was revoked (signed out, or by an operator).

Sessions are stateless signed cookies (``auth.session``); revocation is a deny list in PostgreSQL
(``store.sessions``), so it holds across backend replicas. Each replica caches a session's answer
for ``CACHE_SECONDS``: a revocation made on another replica takes effect there within that time;
on the replica that made it, at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from backend_api.auth.session import Session
from backend_api.http.errors import json_response, read_model
from backend_api.keys import DB_POOL, SESSIONS
from backend_api.metrics import count_ignored_session
from backend_api.store import sessions as store
from shared_contracts.actions import Provider
from shared_contracts.owner import SessionRevokeRequest, SessionRevokeResponse

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
CACHE_MAX = 10_000


class SessionGuard:
    def __init__(self, cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = cache_seconds
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}

    async def revoked(self, pool: asyncpg.Pool, session: Session) -> bool:
        now = self._clock()
        cached = self._answers.get(session.sid)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with pool.acquire() as conn:
            answer = await store.is_revoked(
                conn, session.sid, session.user_id, datetime.fromtimestamp(session.issued_at, UTC)
            )
        if len(self._answers) >= CACHE_MAX:
            self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
            if len(self._answers) >= CACHE_MAX:
                self._answers.clear()
        self._answers[session.sid] = (answer, now + self._ttl)
        return answer

    def mark_revoked(self, session_id: str) -> None:
        self._answers[session_id] = (True, self._clock() + self._ttl)

    def forget(self) -> None:
        """After a revocation by user: re-ask for every session on this replica."""
        self._answers.clear()


SESSION_GUARD = web.AppKey("session_guard", SessionGuard)


async def current_session(request: web.Request, provider: Provider | None = Provider.GITHUB) -> Session | None:
    """The request's session: signed, not expired, not revoked and of ``provider`` (None: either);
    else None (signed out).

    GitHub's by default: the owner API, dashboard, settings and manifest pages decide by GitHub user
    ids and logins, and a Bitbucket nickname equal to a GitHub login must never pass for it there.
    """
    session = request.app[SESSIONS].from_request(request, time.time())
    if session is None:
        return None
    if provider is not None and session.provider is not provider:
        log.info("a %s session reads as signed out on a %s page", session.provider.value, provider.value,
                 extra={"session_id": session.sid, "path": request.path})
        count_ignored_session(request, session.provider)
        return None
    if await request.app[SESSION_GUARD].revoked(request.app[DB_POOL], session):
        return None
    return session


async def revoke(request: web.Request, session: Session) -> None:
    async with request.app[DB_POOL].acquire() as conn:
        await store.revoke_session(conn, session.sid, datetime.fromtimestamp(session.expires_at, UTC))
    request.app[SESSION_GUARD].mark_revoked(session.sid)


async def internal_revoke(request: web.Request) -> web.Response:
    """Admin key (the middleware checked): put a session, or every session of a user, on the deny list."""
    req = await read_model(request, SessionRevokeRequest)
    guard = request.app[SESSION_GUARD]
    revoked_before = None
    async with request.app[DB_POOL].acquire() as conn:
        if req.session_id is not None:
            # The cookie's expiry is unknown here; no session outlives its TTL from now.
            until = datetime.fromtimestamp(time.time() + request.app[SESSIONS].ttl_seconds, UTC)
            await store.revoke_session(conn, req.session_id, until)
            guard.mark_revoked(req.session_id)
        else:
            assert req.github_user_id is not None
            revoked_before = await store.revoke_user(conn, req.github_user_id)
            guard.forget()
    log.info("sessions revoked by an operator",
             extra={"session_id": req.session_id, "github_user_id": req.github_user_id})
    return json_response(SessionRevokeResponse(
        session_id=req.session_id, github_user_id=req.github_user_id, revoked_before=revoked_before,
    ))
