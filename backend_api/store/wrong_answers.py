"""SQL for the verification page's wrong-answer limit (docs/verification.md)."""

from __future__ import annotations

from backend_api.store.db import Conn


async def recent(conn: Conn, challenge_id: int, session_id: str, window_seconds: int) -> tuple[int, int]:
    """Wrong answers within the window: (for this challenge, from this session)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE challenge_id = $1) AS by_challenge,
                  count(*) FILTER (WHERE session_id = $2) AS by_session
           FROM verify_wrong_answers
           WHERE (challenge_id = $1 OR session_id = $2) AND failed_at > now() - make_interval(secs => $3)""",
        challenge_id, session_id, window_seconds,
    )
    assert row is not None
    return int(row["by_challenge"]), int(row["by_session"])


async def record(conn: Conn, challenge_id: int, session_id: str, github_user_id: int, window_seconds: int) -> None:
    await conn.execute(
        "INSERT INTO verify_wrong_answers (challenge_id, session_id, github_user_id) VALUES ($1, $2, $3)",
        challenge_id, session_id, github_user_id,
    )
    await conn.execute(
        "DELETE FROM verify_wrong_answers WHERE failed_at < now() - make_interval(secs => $1)", window_seconds
    )
