"""SQL for per-repository settings."""

from __future__ import annotations

from backend_api.challenges.config_file import effective as _effective
from backend_api.store.db import Conn
from shared_contracts.owner import RepoSettings
from shared_contracts.repo_config import SettingSource

COLUMNS = (
    "gate_drafts", "deadline_seconds", "warn_only", "exempt_comment", "exempt_bots",
    "whitelist_logins", "whitelist_user_ids", "exempt_associations", "challenge_text", "challenge_question",
    "reopen_on_verify",
)


async def get(conn: Conn, repo_id: int) -> RepoSettings:
    row = await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM repo_settings WHERE repo_id = $1", repo_id)
    return from_row(dict(row) if row is not None else None)


async def effective(conn: Conn, repo_id: int) -> tuple[RepoSettings, dict[str, SettingSource]]:
    """The settings in force — the repository's config file over these settings — and the source of
    each value (docs/configuration.md). `get` is the owner API's own settings alone."""
    row = await conn.fetchrow(
        f"""SELECT s.repo_id IS NOT NULL AS has_settings, {', '.join(f's.{c}' for c in COLUMNS)}, f.config
            FROM (SELECT $1::bigint AS repo_id) k
            LEFT JOIN repo_settings s ON s.repo_id = k.repo_id
            LEFT JOIN repo_config_files f ON f.repo_id = k.repo_id""",
        repo_id,
    )
    assert row is not None
    api = from_row({c: row[c] for c in COLUMNS}) if row["has_settings"] else None
    return _effective(api, row["config"])


def from_row(row: dict[str, object] | None) -> RepoSettings:
    """Settings from a row of COLUMNS; no row means the defaults."""
    return RepoSettings() if row is None else RepoSettings.model_validate(row)


async def put(conn: Conn, repo_id: int, settings: RepoSettings) -> None:
    values = [getattr(settings, c) for c in COLUMNS]
    placeholders = ", ".join(f"${i + 2}" for i in range(len(COLUMNS)))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)
    await conn.execute(
        f"""INSERT INTO repo_settings (repo_id, {', '.join(COLUMNS)}) VALUES ($1, {placeholders})
            ON CONFLICT (repo_id) DO UPDATE SET {updates}, updated_at = now()""",
        repo_id, *values,
    )


async def answer_is_set(conn: Conn, repo_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT challenge_answer_hash IS NOT NULL FROM repo_settings WHERE repo_id = $1", repo_id
        )
    )


async def set_answer_hash(conn: Conn, repo_id: int, answer_hash: str | None) -> None:
    """Store (or with ``None`` remove) the hash of the expected answer. The settings row must exist
    (``repo_settings.put`` first, in the same transaction)."""
    await conn.execute(
        "UPDATE repo_settings SET challenge_answer_hash = $2, updated_at = now() WHERE repo_id = $1",
        repo_id, answer_hash,
    )
