"""SQL for the challenge aggregate: `challenges` and the verified `contributors`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backend_api.store.db import Conn
from shared_contracts.actions import Provider


@dataclass(frozen=True, slots=True)
class NewChallenge:
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    pr_id: int
    head_sha: str
    author_id: int
    author_login: str
    deadline_at: datetime
    token_hash: str
    delivery_id: str
    provider: Provider = Provider.GITHUB


async def lock_pull_request(conn: Conn, repo_id: int, pr_number: int) -> None:
    """Serialize every decision about one PR for the rest of the transaction."""
    await lock_pull_requests(conn, [(repo_id, pr_number)])


async def lock_pull_requests(conn: Conn, prs: Sequence[tuple[int, int]]) -> None:
    """`lock_pull_request` for several PRs (repo id, number), taken in one order so that two
    transactions locking overlapping sets wait for each other instead of deadlocking."""
    keys = sorted({(repo_id % (2**31), pr_number) for repo_id, pr_number in prs})
    await conn.execute(
        """SELECT pg_advisory_xact_lock(k.a, k.b)
           FROM (SELECT a, b FROM unnest($1::int[], $2::int[]) AS u(a, b) ORDER BY a, b) AS k""",
        [a for a, _ in keys], [b for _, b in keys],
    )


async def pending_for_pr(conn: Conn, repo_id: int, pr_number: int) -> int | None:
    value = await conn.fetchval(
        "SELECT challenge_id FROM challenges WHERE repo_id = $1 AND pr_number = $2 AND status = 'PENDING'",
        repo_id, pr_number,
    )
    return int(value) if value is not None else None


async def cancel_pending_for_pr(
    conn: Conn, repo_id: int, pr_number: int, resolution: str
) -> int | None:
    value = await conn.fetchval(
        """UPDATE challenges SET status = 'CANCELLED', resolved_at = now(), resolution = $3
           WHERE repo_id = $1 AND pr_number = $2 AND status = 'PENDING'
           RETURNING challenge_id""",
        repo_id, pr_number, resolution,
    )
    return int(value) if value is not None else None


async def cancel_pending_for_installation(
    conn: Conn, installation_id: int, resolution: str
) -> int:
    result: str = await conn.execute(
        """UPDATE challenges SET status = 'CANCELLED', resolved_at = now(), resolution = $2
           WHERE installation_id = $1 AND status = 'PENDING'""",
        installation_id, resolution,
    )
    return int(result.split()[-1])


async def cancel_pending_for_repos(
    conn: Conn, installation_id: int, repo_ids: list[int], resolution: str
) -> int:
    result: str = await conn.execute(
        """UPDATE challenges SET status = 'CANCELLED', resolved_at = now(), resolution = $3
           WHERE installation_id = $1 AND repo_id = ANY($2::bigint[]) AND status = 'PENDING'""",
        installation_id, repo_ids, resolution,
    )
    return int(result.split()[-1])


async def record_verified(
    conn: Conn, installation_id: int, github_user_id: int, login: str, challenge_id: int | None
) -> None:
    await conn.execute(
        """INSERT INTO contributors (installation_id, github_user_id, login, challenge_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (installation_id, github_user_id) DO UPDATE SET login = EXCLUDED.login""",
        installation_id, github_user_id, login, challenge_id,
    )


async def resolve_pending_for_pr(
    conn: Conn, repo_id: int, pr_number: int, status: str, resolution: str
) -> int | None:
    value = await conn.fetchval(
        """UPDATE challenges SET status = $3, resolved_at = now(), resolution = $4
           WHERE repo_id = $1 AND pr_number = $2 AND status = 'PENDING'
           RETURNING challenge_id""",
        repo_id, pr_number, status, resolution,
    )
    return int(value) if value is not None else None


async def record_exemption(conn: Conn, new: NewChallenge, resolution: str) -> int:
    """A PR-level exemption decided by a maintainer, kept as an already-resolved challenge row."""
    value = await conn.fetchval(
        """INSERT INTO challenges (installation_id, repo_id, repo_full_name, pr_number, pr_id, head_sha,
                                   author_id, author_login, status, deadline_at, delivery_id, resolved_at, resolution,
                                   provider)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'EXEMPTED', now(), $9, now(), $10, $11)
           RETURNING challenge_id""",
        new.installation_id, new.repo_id, new.repo_full_name, new.pr_number, new.pr_id, new.head_sha,
        new.author_id, new.author_login, new.delivery_id, resolution, new.provider.value,
    )
    return int(value)


async def move_head(conn: Conn, challenge_id: int, head_sha: str) -> None:
    await conn.execute("UPDATE challenges SET head_sha = $2 WHERE challenge_id = $1", challenge_id, head_sha)


@dataclass(frozen=True, slots=True)
class DueChallenge:
    challenge_id: int
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    head_sha: str
    author_login: str
    author_verified: bool
    provider: Provider


async def lock_due(conn: Conn, limit: int) -> list[DueChallenge]:
    """Lock up to `limit` PENDING challenges past their deadline (SKIP LOCKED: replicas share the work)."""
    rows = await conn.fetch(
        """SELECT c.challenge_id, c.installation_id, c.repo_id, c.repo_full_name, c.pr_number, c.head_sha,
                  c.author_login, v.github_user_id IS NOT NULL AS author_verified, c.provider
           FROM challenges c
           LEFT JOIN contributors v ON v.installation_id = c.installation_id AND v.github_user_id = c.author_id
           WHERE c.status = 'PENDING' AND c.deadline_at <= now()
           ORDER BY c.deadline_at, c.challenge_id
           LIMIT $1
           FOR UPDATE OF c SKIP LOCKED""",
        limit,
    )
    return [DueChallenge(**{**dict(r), "provider": Provider(r["provider"])}) for r in rows]


async def mark_verified(conn: Conn, challenge_ids: list[int]) -> None:
    await conn.execute(
        """UPDATE challenges SET status = 'VERIFIED', resolved_at = now(), resolution = 'author verified'
           WHERE challenge_id = ANY($1::bigint[]) AND status = 'PENDING'""",
        challenge_ids,
    )


async def mark_timed_out(conn: Conn, timed_out: list[tuple[int, str, str]]) -> None:
    """(challenge id, new token hash, resolution) triples. The link token is rotated because the timeout
    comment replaces the comment that held the old link."""
    await conn.executemany(
        """UPDATE challenges SET status = 'TIMED_OUT', resolved_at = now(), resolution = $3,
                                 token_hash = $2
           WHERE challenge_id = $1 AND status = 'PENDING'""",
        timed_out,
    )


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    """A PENDING challenge with what a `closed` event about its pull request needs."""

    challenge_id: int
    repo_full_name: str
    pr_number: int
    pr_id: int
    head_sha: str
    author_id: int
    author_login: str
    created_at: datetime


async def pending_in_repo(conn: Conn, installation_id: int, repo_id: int) -> list[PendingChallenge]:
    rows = await conn.fetch(
        """SELECT challenge_id, repo_full_name, pr_number, pr_id, head_sha, author_id, author_login, created_at
           FROM challenges WHERE installation_id = $1 AND repo_id = $2 AND status = 'PENDING'
           ORDER BY pr_number""",
        installation_id, repo_id,
    )
    return [PendingChallenge(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class LatestChallenge:
    """The newest challenge of a pull request: what prgate last knew of it (head, author)."""

    challenge_id: int
    installation_id: int
    repo_full_name: str
    pr_id: int
    head_sha: str
    author_id: int
    author_login: str
    status: str


async def latest_challenge(conn: Conn, repo_id: int, pr_number: int) -> LatestChallenge | None:
    row = await conn.fetchrow(
        """SELECT challenge_id, installation_id, repo_full_name, pr_id, head_sha, author_id, author_login, status
           FROM challenges WHERE repo_id = $1 AND pr_number = $2
           ORDER BY challenge_id DESC LIMIT 1""",
        repo_id, pr_number,
    )
    return None if row is None else LatestChallenge(**dict(row))
