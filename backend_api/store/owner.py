"""The owner API's reads of one repository: its challenges and actions, newest first, paged by id.
Nothing here ever selects a link token's hash."""

from __future__ import annotations

from backend_api.store.db import Conn
from shared_contracts.owner import ActionItem, ChallengeItem


async def repo_challenges(conn: Conn, repo_id: int, limit: int, before: int | None) -> list[ChallengeItem]:
    rows = await conn.fetch(
        """SELECT challenge_id, pr_number, head_sha, author_id, author_login, status, created_at, deadline_at,
                  resolved_at, resolution
           FROM challenges
           WHERE repo_id = $1 AND ($2::bigint IS NULL OR challenge_id < $2)
           ORDER BY challenge_id DESC
           LIMIT $3""",
        repo_id, before, limit,
    )
    return [ChallengeItem.model_validate(dict(r)) for r in rows]


async def repo_actions(conn: Conn, repo_id: int, limit: int, before: int | None) -> list[ActionItem]:
    rows = await conn.fetch(
        """SELECT action_id, action_type, status, pr_number, challenge_id, attempt, max_attempts,
                  CASE WHEN status IN ('PENDING', 'CLAIMED') THEN next_attempt_at END AS next_attempt_at,
                  last_error, created_at, updated_at, completed_at
           FROM bot_actions
           WHERE repo_id = $1 AND ($2::bigint IS NULL OR action_id < $2)
           ORDER BY action_id DESC
           LIMIT $3""",
        repo_id, before, limit,
    )
    return [ActionItem.model_validate(dict(r)) for r in rows]
