"""SQL of the verification pages: find a challenge by its link, and verify in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend_api.challenges.verify import (
    ChallengeInfo,
    ChallengeStatus,
    Refusal,
    RepoRules,
    SignedInUser,
    VerificationPlan,
    VerifyForm,
    plan_verification,
)
from backend_api.store import challenges, outbox, repo_settings
from backend_api.store.db import Conn

_COLUMNS = (
    "challenge_id, installation_id, repo_id, repo_full_name, pr_number, head_sha, author_id, author_login, "
    "status, deadline_at, resolved_at, resolution"
)
# A deadlock (e.g. with a bulk cancel that locks the same rows in another order) aborts one side;
# the verification is then simply run again.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ChallengePage:
    """What the verification page shows: the challenge and what its repository asks."""

    challenge: ChallengeInfo
    rules: RepoRules


@dataclass(frozen=True, slots=True)
class Verified:
    plan: VerificationPlan
    action_ids: tuple[int, ...]


def _info(row: asyncpg.Record) -> ChallengeInfo:
    return ChallengeInfo(
        challenge_id=row["challenge_id"], installation_id=row["installation_id"], repo_id=row["repo_id"],
        repo_full_name=row["repo_full_name"], pr_number=row["pr_number"], head_sha=row["head_sha"],
        author_id=row["author_id"], author_login=row["author_login"], status=ChallengeStatus(row["status"]),
        deadline_at=row["deadline_at"], resolved_at=row["resolved_at"], resolution=row["resolution"],
    )


async def _rules(conn: Conn, repo_id: int) -> RepoRules:
    answer = await conn.fetchval("SELECT challenge_answer_hash FROM repo_settings WHERE repo_id = $1", repo_id)
    return RepoRules(settings=await repo_settings.get(conn, repo_id), answer_hash=answer)


async def find_by_token_hash(conn: Conn, token_hash: str) -> ChallengePage | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM challenges WHERE token_hash = $1", token_hash)
    if row is None:
        return None
    challenge = _info(row)
    return ChallengePage(challenge=challenge, rules=await _rules(conn, challenge.repo_id))


async def verify(
    pool: asyncpg.Pool,
    token_hash: str,
    user: SignedInUser,
    form: VerifyForm,
    *,
    verify_url: str,
    max_attempts: int,
) -> Verified | Refusal | None:
    """Verify the challenge behind ``token_hash`` (``None``: no such challenge) in one transaction."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await _verify(conn, token_hash, user, form, verify_url, max_attempts)
        except asyncpg.DeadlockDetectedError:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _verify(
    conn: Conn, token_hash: str, user: SignedInUser, form: VerifyForm, verify_url: str, max_attempts: int
) -> Verified | Refusal | None:
    head = await conn.fetchrow(
        "SELECT challenge_id, installation_id, author_id FROM challenges WHERE token_hash = $1", token_hash
    )
    if head is None:
        return None
    # Lock the challenge and every open challenge of its author in the installation, in id order
    # (so two verifications of one author cannot deadlock). A row that changed while we waited is
    # re-read: a concurrent submit that verified first leaves the target VERIFIED, and the plan
    # below refuses it, so one verification happens and one set of actions is enqueued.
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM challenges
            WHERE installation_id = $1 AND author_id = $2
              AND (challenge_id = $3 OR status IN ('PENDING', 'TIMED_OUT'))
            ORDER BY challenge_id
            FOR UPDATE""",
        head["installation_id"], head["author_id"], head["challenge_id"],
    )
    infos = [_info(r) for r in rows]
    target = next(c for c in infos if c.challenge_id == head["challenge_id"])
    rules = await _rules(conn, target.repo_id)
    settings = {
        repo_id: await repo_settings.get(conn, repo_id)
        for repo_id in sorted({c.repo_id for c in infos if c.repo_id != target.repo_id})
    }
    plan = plan_verification(target, rules, infos, settings, user, form, verify_url)
    if isinstance(plan, Refusal):
        return plan

    await conn.execute(
        """UPDATE challenges
           SET status = 'VERIFIED', resolved_at = now(),
               resolution = CASE WHEN challenge_id = $2 THEN $3 ELSE $4 END
           WHERE challenge_id = ANY($1::bigint[]) AND status IN ('PENDING', 'TIMED_OUT')""",
        [c.challenge_id for c in plan.resolve], plan.challenge_id,
        plan.resolution, plan.cascade_resolution,
    )
    await challenges.record_verified(conn, plan.installation_id, user.id, user.login, plan.challenge_id)
    action_ids = []
    for action in plan.actions:
        target_pr = outbox.PrTarget(
            action.installation_id, action.repo_id, action.repo_full_name, action.pr_number, action.challenge_id,
            max_attempts,
        )
        action_ids.append(await target_pr.enqueue(conn, action.action_type, action.payload))
    return Verified(plan=plan, action_ids=tuple(action_ids))
