"""SQL for `repo_config_files`: what was last read of each repository's `.github/prgate.yml`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend_api.store.db import Conn


@dataclass(frozen=True, slots=True)
class ConfigRow:
    repo_id: int
    installation_id: int
    repo_full_name: str
    config: dict[str, Any] | None
    key_sources: dict[str, str]
    own_file: bool
    inherits: list[str]
    blob_sha: str | None
    last_error: str | None
    last_error_sha: str | None


_COLUMNS = ("repo_id, installation_id, repo_full_name, config, key_sources, own_file, inherits, blob_sha, "
            "last_error, last_error_sha")


def _row(record: Any) -> ConfigRow:
    return ConfigRow(
        repo_id=record["repo_id"], installation_id=record["installation_id"], repo_full_name=record["repo_full_name"],
        config=record["config"], key_sources=dict(record["key_sources"]), own_file=record["own_file"],
        inherits=list(record["inherits"]), blob_sha=record["blob_sha"], last_error=record["last_error"],
        last_error_sha=record["last_error_sha"],
    )


async def get(conn: Conn, repo_id: int) -> ConfigRow | None:
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM repo_config_files WHERE repo_id = $1", repo_id)
    return None if record is None else _row(record)


async def lock(conn: Conn, repo_id: int) -> None:
    """Serialize refreshes of one repository (a push and an installation event racing)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('repo_config_files'), hashtext($1::text))",
                       str(repo_id))


async def save_valid(conn: Conn, repo_id: int, installation_id: int, repo_full_name: str, *,
                     config: dict[str, Any] | None, key_sources: dict[str, str], own_file: bool,
                     inherits: list[str], blob_sha: str | None) -> None:
    """A file read that is valid (or no file at all: ``config`` None): it is in force now."""
    await conn.execute(
        """INSERT INTO repo_config_files (repo_id, installation_id, repo_full_name, config, key_sources, own_file,
                                          inherits, blob_sha, last_error, last_error_sha, last_error_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)
           ON CONFLICT (repo_id) DO UPDATE SET installation_id = EXCLUDED.installation_id,
               repo_full_name = EXCLUDED.repo_full_name, config = EXCLUDED.config,
               key_sources = EXCLUDED.key_sources, own_file = EXCLUDED.own_file, inherits = EXCLUDED.inherits,
               blob_sha = EXCLUDED.blob_sha, last_error = NULL, last_error_sha = NULL, last_error_at = NULL,
               fetched_at = now(), updated_at = now()""",
        repo_id, installation_id, repo_full_name, config, key_sources, own_file, inherits, blob_sha,
    )


async def save_invalid(conn: Conn, repo_id: int, installation_id: int, repo_full_name: str, *, error: str,
                       commit_sha: str | None, own_file: bool, inherits: list[str]) -> None:
    """A file read that cannot be used: the last valid ``config`` stays in force, the error is kept."""
    await conn.execute(
        """INSERT INTO repo_config_files (repo_id, installation_id, repo_full_name, own_file, inherits,
                                          last_error, last_error_sha, last_error_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (repo_id) DO UPDATE SET installation_id = EXCLUDED.installation_id,
               repo_full_name = EXCLUDED.repo_full_name, own_file = EXCLUDED.own_file,
               inherits = EXCLUDED.inherits, last_error = EXCLUDED.last_error,
               last_error_sha = EXCLUDED.last_error_sha, last_error_at = now(), fetched_at = now(),
               updated_at = now()""",
        repo_id, installation_id, repo_full_name, own_file, inherits, error[:2000], commit_sha,
    )


async def dependents(conn: Conn, installation_id: int, full_name: str, *, org_defaults: bool) -> list[tuple[int, str]]:
    """The repositories of the installation whose configuration a push to ``full_name``'s file can
    change: those that merged it last time, and for the organization's `.github` every repository
    without a file of its own (including those never read)."""
    rows = await conn.fetch(
        """SELECT r.repo_id, r.full_name FROM github_installation_repositories r
           LEFT JOIN repo_config_files f ON f.repo_id = r.repo_id
           WHERE r.installation_id = $1 AND r.removed_at IS NULL AND r.full_name <> $2
             AND ($2 = ANY(coalesce(f.inherits, '{}')) OR ($3 AND NOT coalesce(f.own_file, false)))
           ORDER BY r.repo_id""",
        installation_id, full_name, org_defaults,
    )
    return [(int(r["repo_id"]), str(r["full_name"])) for r in rows]


async def bitbucket_dependents(conn: Conn, tenant_id: int, full_name: str) -> list[tuple[int, str]]:
    """The Bitbucket workspace's repositories that merged ``full_name``'s `.prgate.yml` last time
    (`_extends`): a push to it can change their configuration. Bitbucket has no organization file."""
    rows = await conn.fetch(
        """SELECT r.repo_id, r.full_name FROM bitbucket_repositories r
           JOIN repo_config_files f ON f.repo_id = r.repo_id
           WHERE r.tenant_id = $1 AND r.removed_at IS NULL AND lower(r.full_name) <> lower($2)
             AND $2 = ANY(f.inherits)
           ORDER BY r.repo_id""",
        tenant_id, full_name,
    )
    return [(int(r["repo_id"]), str(r["full_name"])) for r in rows]


async def config_of(conn: Conn, repo_id: int) -> tuple[dict[str, Any] | None, dict[str, str]]:
    record = await conn.fetchrow("SELECT config, key_sources FROM repo_config_files WHERE repo_id = $1", repo_id)
    return (None, {}) if record is None else (record["config"], dict(record["key_sources"]))


async def errors(conn: Conn, repo_ids: list[int]) -> dict[int, str]:
    """The repositories among ``repo_ids`` whose newest file is invalid, and why (the dashboard)."""
    rows = await conn.fetch(
        """SELECT repo_id, last_error FROM repo_config_files
           WHERE repo_id = ANY($1::bigint[]) AND last_error IS NOT NULL""",
        repo_ids,
    )
    return {int(r["repo_id"]): str(r["last_error"]) for r in rows}


# ---- repo_config_stale: repositories to read again without a push of their own (migration 0023) ----


@dataclass(frozen=True, slots=True)
class StaleRepo:
    repo_id: int
    installation_id: int
    repo_full_name: str
    reason: str
    marked_at: datetime
    attempts: int


async def mark_stale(conn: Conn, installation_id: int, repos: Sequence[tuple[int, str]], reason: str) -> None:
    """Mark ``(repo_id, full_name)`` pairs to be read again; marking one already marked moves its
    ``marked_at`` (a read in flight then leaves the row, so the newer cause is read too) and makes it
    due now, forgetting its backoff."""
    if not repos:
        return
    await conn.executemany(
        """INSERT INTO repo_config_stale (repo_id, installation_id, repo_full_name, reason)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (repo_id) DO UPDATE SET installation_id = EXCLUDED.installation_id,
               repo_full_name = EXCLUDED.repo_full_name, reason = EXCLUDED.reason,
               marked_at = clock_timestamp(), attempts = 0, next_attempt_at = now(), last_error = NULL""",
        [(repo_id, installation_id, full_name, reason[:200]) for repo_id, full_name in repos],
    )


async def claim_stale(conn: Conn, limit: int, lease_seconds: float) -> list[StaleRepo]:
    """Up to ``limit`` due rows, oldest mark first, each pushed ``lease_seconds`` ahead so that a
    concurrent call (or a crash mid-read) neither reads it twice at once nor loses it."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT repo_id FROM repo_config_stale WHERE next_attempt_at <= now()
               ORDER BY marked_at, repo_id LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE repo_config_stale s SET next_attempt_at = now() + make_interval(secs => $2)
           FROM due WHERE s.repo_id = due.repo_id
           RETURNING s.repo_id, s.installation_id, s.repo_full_name, s.reason, s.marked_at, s.attempts""",
        limit, lease_seconds,
    )
    found = [StaleRepo(repo_id=int(r["repo_id"]), installation_id=int(r["installation_id"]),
                       repo_full_name=str(r["repo_full_name"]), reason=str(r["reason"]), marked_at=r["marked_at"],
                       attempts=int(r["attempts"])) for r in rows]
    return sorted(found, key=lambda s: (s.marked_at, s.repo_id))


async def clear_stale(conn: Conn, repo_id: int, marked_at: datetime) -> None:
    """Done with the mark that was claimed; a newer mark (``marked_at`` moved) stays to be read."""
    await conn.execute("DELETE FROM repo_config_stale WHERE repo_id = $1 AND marked_at = $2", repo_id, marked_at)


async def retry_stale(conn: Conn, repo_id: int, marked_at: datetime, delay_seconds: float, error: str) -> None:
    """A read GitHub could not answer: due again after ``delay_seconds``."""
    await conn.execute(
        """UPDATE repo_config_stale SET attempts = attempts + 1, last_error = $3,
               next_attempt_at = now() + make_interval(secs => $4)
           WHERE repo_id = $1 AND marked_at = $2""",
        repo_id, marked_at, error[:500], delay_seconds,
    )


async def stale_count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM repo_config_stale"))


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """A repository whose newest file is invalid (the dashboard)."""

    repo_id: int
    installation_id: int
    repo_full_name: str
    error: str
    error_sha: str | None
    error_at: datetime | None


async def problems(conn: Conn) -> list[ConfigProblem]:
    """Every repository, of any installation, whose newest config file read was invalid (operator view)."""
    rows = await conn.fetch(
        """SELECT repo_id, installation_id, repo_full_name, last_error, last_error_sha, last_error_at
           FROM repo_config_files WHERE last_error IS NOT NULL ORDER BY last_error_at DESC NULLS LAST, repo_id"""
    )
    return [ConfigProblem(repo_id=int(r["repo_id"]), installation_id=int(r["installation_id"]),
                          repo_full_name=str(r["repo_full_name"]), error=str(r["last_error"]),
                          error_sha=r["last_error_sha"], error_at=r["last_error_at"]) for r in rows]
