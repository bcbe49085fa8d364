"""Apply `backend_api/migrations/NNNN_*.sql` in order.

Each file runs in its own transaction under a session advisory lock (so two
replicas starting together do not race) and is recorded in
`schema_migrations`; re-running is a no-op.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Package data of backend_api (pyproject), so an installed wheel carries them: no copy beside it.
# A plain directory install is assumed (the image and editable installs are; a zipped one is not).
DEFAULT_MIGRATIONS_DIR = Path(str(resources.files("backend_api") / "migrations"))
_LOCK_KEY = 0x70726761  # "prga"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def discover(directory: Path = DEFAULT_MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    found: list[tuple[int, str, Path]] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append((int(match.group(1)), path.stem, path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


async def apply_migrations(dsn: str, directory: Path = DEFAULT_MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    INTEGER PRIMARY KEY,
                       name       TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, path in migrations:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                    )
                log.info("applied migration", extra={"migration": name})
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied
