"""The deadline sweeper: the only path by which prgate closes a pull request.

Each run times out the PENDING challenges past their deadline and, in the same
transaction, enqueues what follows: the closing comment (or, in warn-only
repositories, just the comment) and a failing commit status.
"""

from __future__ import annotations

import asyncpg

from backend_api.challenges import messages
from backend_api.challenges.tokens import hash_token, new_token
from backend_api.store import challenges, outbox, repo_settings
from shared_contracts.actions import ActionType, CommentPayload, Provider, StatusPayload, is_commit_sha


async def sweep_deadlines(pool: asyncpg.Pool, *, public_url: str, max_attempts: int, batch: int = 200) -> int:
    """Time out one batch; returns how many challenges it resolved."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await challenges.lock_due(conn, batch)
        if not locked:
            return 0
        # An author who verified while this PR was being gated is let through, never closed.
        verified = [c for c in locked if c.author_verified]
        await challenges.mark_verified(conn, [c.challenge_id for c in verified])
        for c in verified:
            target = outbox.PrTarget(c.installation_id, c.repo_id, c.repo_full_name, c.pr_number, c.challenge_id,
                                     max_attempts, c.provider)
            await target.enqueue(conn, ActionType.UPSERT_PR_COMMENT, CommentPayload(
                marker=messages.PR_COMMENT_MARKER, body=messages.verified_comment(c.author_login)))
            if is_commit_sha(c.head_sha):
                await target.enqueue(conn, ActionType.SET_COMMIT_STATUS, StatusPayload(
                    sha=c.head_sha, state="success", description=messages.STATUS_VERIFIED))
        due = [c for c in locked if not c.author_verified]
        tokens = {c.challenge_id: new_token() for c in due}
        # The settings in force (the repository's config file over the owner API's), as the gate used them.
        rules = {c.repo_id: (await repo_settings.effective(conn, c.repo_id))[0] for c in due}
        await challenges.mark_timed_out(conn, [
            (c.challenge_id, hash_token(tokens[c.challenge_id]),
             messages.RESOLUTION_TIMED_OUT_WARNED if rules[c.repo_id].warn_only
             else messages.RESOLUTION_TIMED_OUT_CLOSED)
            for c in due
        ])
        for c in due:
            settings = rules[c.repo_id]
            url = f"{public_url.rstrip('/')}/verify/{tokens[c.challenge_id]}"
            target = outbox.PrTarget(c.installation_id, c.repo_id, c.repo_full_name, c.pr_number, c.challenge_id,
                                     max_attempts, c.provider)
            body = messages.timed_out_comment(c.author_login, url, settings.warn_only,
                                              can_reopen=c.provider is not Provider.BITBUCKET)
            action = ActionType.UPSERT_PR_COMMENT if settings.warn_only else ActionType.CLOSE_PR_WITH_COMMENT
            await target.enqueue(conn, action, CommentPayload(marker=messages.PR_COMMENT_MARKER, body=body))
            if is_commit_sha(c.head_sha):
                await target.enqueue(conn, ActionType.SET_COMMIT_STATUS, StatusPayload(
                    sha=c.head_sha, state="failure", description=messages.STATUS_TIMED_OUT, target_url=url,
                ))
    return len(locked)


async def sweep_all(pool: asyncpg.Pool, *, public_url: str, max_attempts: int, batch: int = 200) -> int:
    total = 0
    while (n := await sweep_deadlines(pool, public_url=public_url, max_attempts=max_attempts, batch=batch)):
        total += n
        if n < batch:
            break
    return total
