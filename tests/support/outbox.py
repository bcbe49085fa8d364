"""Seed the outbox directly, for claim/result tests that don't need a webhook per action."""

from __future__ import annotations

import asyncpg

from tests.support.ingest import send_installation
from tests.support.payloads import installation_payload
from tests.support.signed import SignedClient

CLAIM = "/internal/v2/bot-actions/claim"
RESULTS = "/internal/v2/bot-actions/results"


def result_path(action_id: int) -> str:
    return f"/internal/v2/bot-actions/{action_id}/result"


async def install(backend: SignedClient, installation_id: int = 1001) -> None:
    await send_installation(backend, "installation", installation_payload("created", installation_id=installation_id))


async def seed_actions(
    db: asyncpg.Pool,
    count: int,
    *,
    installation_id: int = 1001,
    prs: int | None = None,
    repo: str = "octo-org/widgets",
    repo_id: int = 5001,
    max_attempts: int = 8,
    action_type: str = "UPSERT_PR_COMMENT",
) -> list[int]:
    """`count` actions spread over `prs` pull requests (default: one PR each)."""
    prs = prs or count
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number,
                                        payload, max_attempts)
               SELECT 'github', $5, $1, $7, $2, 1 + (g % $3),
                      jsonb_build_object('marker', '<!-- m -->', 'body', E'<!-- m -->\\nbody ' || g), $4
               FROM generate_series(0, $6 - 1) g
               ORDER BY g
               RETURNING action_id""",
            installation_id, repo, prs, max_attempts, action_type, count, repo_id,
        )
    return [r["action_id"] for r in rows]


async def expire_leases(db: asyncpg.Pool) -> None:
    """Move every lease into the past: the database's clock is the process edge we control."""
    async with db.acquire() as conn:
        await conn.execute(
            """UPDATE bot_actions SET lease_expires_at = now() - interval '1 second',
                                      next_attempt_at = now() - interval '1 second'
               WHERE status = 'CLAIMED'"""
        )


async def make_due(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await conn.execute("UPDATE bot_actions SET next_attempt_at = now() WHERE status = 'PENDING'")
