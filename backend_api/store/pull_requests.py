"""SQL for `decided_pull_requests`: the pull requests prgate has evaluated (reconciliation asks it
which open pull requests it never saw)."""

from __future__ import annotations

from collections.abc import Sequence

from backend_api.store.db import Conn


async def is_decided(conn: Conn, repo_id: int, pr_number: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM decided_pull_requests WHERE repo_id = $1 AND pr_number = $2", repo_id, pr_number
        )
    )


async def decided_among(conn: Conn, repo_id: int, pr_numbers: Sequence[int]) -> set[int]:
    if not pr_numbers:
        return set()
    rows = await conn.fetch(
        "SELECT pr_number FROM decided_pull_requests WHERE repo_id = $1 AND pr_number = ANY($2::int[])",
        repo_id, list(pr_numbers),
    )
    return {int(r["pr_number"]) for r in rows}
