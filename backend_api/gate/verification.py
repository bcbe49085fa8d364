"""Verify a challenge from its page: lock, plan (pure: ``challenges.verify``), resolve, enqueue; one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend_api.challenges.verify import Refusal, SignedInUser, VerificationPlan, VerifyForm, plan_verification
from backend_api.store import challenges, outbox, repo_settings
from backend_api.store import verification as store
from backend_api.store.db import Conn

# A deadlock (e.g. with a bulk cancel that locks the same rows in another order) aborts one side;
# the verification is then simply run again.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Verified:
    plan: VerificationPlan
    action_ids: tuple[int, ...]


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
    locked = await store.lock_author_challenges(conn, token_hash)
    if locked is None:
        return None
    target, infos = locked
    rules = await store.rules(conn, target.repo_id)
    settings = {
        repo_id: (await repo_settings.effective(conn, repo_id))[0]
        for repo_id in sorted({c.repo_id for c in infos if c.repo_id != target.repo_id})
    }
    plan = plan_verification(target, rules, infos, settings, user, form, verify_url)
    if isinstance(plan, Refusal):
        return plan

    await store.mark_verified(
        conn, [c.challenge_id for c in plan.resolve], plan.challenge_id, plan.resolution, plan.cascade_resolution
    )
    await challenges.record_verified(conn, plan.installation_id, user.id, user.login, plan.challenge_id)
    action_ids = []
    for action in plan.actions:
        target_pr = outbox.PrTarget(
            action.installation_id, action.repo_id, action.repo_full_name, action.pr_number, action.challenge_id,
            max_attempts, action.provider,
        )
        action_ids.append(await target_pr.enqueue(conn, action.action_type, action.payload))
    return Verified(plan=plan, action_ids=tuple(action_ids))
