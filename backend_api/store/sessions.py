"""SQL for the session deny list (docs/security.md, "Reopen after timeout, session revocation, wrong-answer rate
limit")."""

from __future__ import annotations

from datetime import datetime

from backend_api.store.db import Conn


async def revoke_session(conn: Conn, session_id: str, expires_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO revoked_sessions (session_id, expires_at) VALUES ($1, $2)
           ON CONFLICT (session_id)
           DO UPDATE SET expires_at = GREATEST(revoked_sessions.expires_at, EXCLUDED.expires_at)""",
        session_id, expires_at,
    )
    # A cookie past its expiry is refused anyway; its row would only grow the table.
    await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < now()")


async def revoke_user(conn: Conn, github_user_id: int) -> datetime:
    """Every session of the user issued until now is refused; the moment is returned."""
    revoked_before: datetime = await conn.fetchval(
        """INSERT INTO revoked_user_sessions (github_user_id, revoked_before) VALUES ($1, now())
           ON CONFLICT (github_user_id) DO UPDATE SET revoked_before = EXCLUDED.revoked_before
           RETURNING revoked_before""",
        github_user_id,
    )
    return revoked_before


async def is_revoked(conn: Conn, session_id: str, github_user_id: int, issued_at: datetime) -> bool:
    revoked: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_id = $1)
               OR EXISTS (SELECT 1 FROM revoked_user_sessions
                          WHERE github_user_id = $2 AND revoked_before >= $3)""",
        session_id, github_user_id, issued_at,
    )
    return revoked
