"""SQL for ``github_app_credentials``: Apps registered through the manifest flow.

Secrets go in and come out as values only; nothing here logs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from backend_api.github_manifest import AppCredentials, GithubAppCredentials
from backend_api.store.db import Conn

_COLUMNS = """app_id, slug, client_id, client_secret, webhook_secret, private_key_pem, owner_login, html_url,
              created_at"""


def claim_hash(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()


async def insert(conn: Conn, creds: AppCredentials, claim: str | None) -> bool:
    """Store one conversion answer; ``False`` when that App id is already stored (a replayed callback)."""
    stored = await conn.fetchval(
        """INSERT INTO github_app_credentials
               (app_id, slug, client_id, client_secret, webhook_secret, private_key_pem, owner_login, html_url,
                claim_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (app_id) DO NOTHING RETURNING true""",
        creds.id,
        creds.slug,
        creds.client_id,
        creds.client_secret.get_secret_value(),
        creds.webhook_secret.get_secret_value() if creds.webhook_secret is not None else None,
        creds.pem.get_secret_value(),
        creds.owner.login,
        creds.html_url,
        claim_hash(claim) if claim else None,
    )
    return bool(stored)


async def latest(conn: Conn, *, claim: str | None = None) -> GithubAppCredentials | None:
    """The most recently stored App; with ``claim``, only the one created under that claim."""
    if claim:
        row = await conn.fetchrow(
            f"""SELECT {_COLUMNS} FROM github_app_credentials WHERE claim_hash = $1
                ORDER BY created_at DESC, app_id DESC LIMIT 1""",
            claim_hash(claim),
        )
    else:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM github_app_credentials ORDER BY created_at DESC, app_id DESC LIMIT 1"
        )
    if row is None:
        return None
    created_at: datetime = row["created_at"]
    return GithubAppCredentials(
        app_id=row["app_id"],
        slug=row["slug"],
        client_id=row["client_id"],
        client_secret=row["client_secret"],
        webhook_secret=row["webhook_secret"],
        private_key_pem=row["private_key_pem"],
        owner_login=row["owner_login"],
        html_url=row["html_url"],
        created_at=created_at.isoformat(),
    )
