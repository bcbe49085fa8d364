"""SQL of the verification pages: find a challenge by its link, lock its author's open challenges, resolve them.

The verification itself (one transaction around these) is ``gate.verification``."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend_api.challenges.verify import (
    ChallengeInfo,
    ChallengeStatus,
    RepoRules,
)
from backend_api.store import repo_settings
from backend_api.store.db import Conn
from shared_contracts.actions import Provider

_COLUMNS = (
    "challenge_id, installation_id, repo_id, repo_full_name, pr_number, head_sha, author_id, author_login, "
    "status, deadline_at, resolved_at, resolution, provider"
)


@dataclass(frozen=True, slots=True)
class ChallengePage:
    """What the verification page shows: the challenge and what its repository asks."""

    challenge: ChallengeInfo
    rules: RepoRules


def _info(row: asyncpg.Record) -> ChallengeInfo:
    return ChallengeInfo(
        challenge_id=row["challenge_id"], installation_id=row["installation_id"], repo_id=row["repo_id"],
        repo_full_name=row["repo_full_name"], pr_number=row["pr_number"], head_sha=row["head_sha"],
        author_id=row["author_id"], author_login=row["author_login"], status=ChallengeStatus(row["status"]),
        deadline_at=row["deadline_at"], resolved_at=row["resolved_at"], resolution=row["resolution"],
        provider=Provider(row["provider"]),
    )


async def rules(conn: Conn, repo_id: int) -> RepoRules:
    answer = await conn.fetchval("SELECT challenge_answer_hash FROM repo_settings WHERE repo_id = $1", repo_id)
    return RepoRules(settings=(await repo_settings.effective(conn, repo_id))[0], answer_hash=answer)


async def find_by_token_hash(conn: Conn, token_hash: str) -> ChallengePage | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM challenges WHERE token_hash = $1", token_hash)
    if row is None:
        return None
    challenge = _info(row)
    return ChallengePage(challenge=challenge, rules=await rules(conn, challenge.repo_id))




async def lock_author_challenges(conn: Conn, token_hash: str) -> tuple[ChallengeInfo, list[ChallengeInfo]] | None:
    """The challenge behind ``token_hash`` and every open challenge of its author in the installation, locked.

    ``None``: no such challenge. Rows are locked in id order so two verifications of one author
    cannot deadlock. A row that changed while we waited is re-read: a concurrent submit that
    verified first leaves the target VERIFIED, and the plan refuses it, so one verification
    happens and one set of actions is enqueued.
    """
    head = await conn.fetchrow(
        "SELECT challenge_id, installation_id, author_id FROM challenges WHERE token_hash = $1", token_hash
    )
    if head is None:
        return None
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM challenges
            WHERE installation_id = $1 AND author_id = $2
              AND (challenge_id = $3 OR status IN ('PENDING', 'TIMED_OUT'))
            ORDER BY challenge_id
            FOR UPDATE""",
        head["installation_id"], head["author_id"], head["challenge_id"],
    )
    infos = [_info(r) for r in rows]
    return next(c for c in infos if c.challenge_id == head["challenge_id"]), infos


async def mark_verified(
    conn: Conn, challenge_ids: list[int], target_id: int, resolution: str, cascade_resolution: str
) -> None:
    """Resolve the locked challenges as VERIFIED: the target with ``resolution``, the rest with the cascade's."""
    await conn.execute(
        """UPDATE challenges
           SET status = 'VERIFIED', resolved_at = now(),
               resolution = CASE WHEN challenge_id = $2 THEN $3 ELSE $4 END
           WHERE challenge_id = ANY($1::bigint[]) AND status IN ('PENDING', 'TIMED_OUT')""",
        challenge_ids, target_id, resolution, cascade_resolution,
    )
