"""SQL for ``github_app_credentials`` and ``github_app_setup_claims``: the manifest flow.

Secrets go in and come out as values only, and come out once: :func:`take` deletes what it
answers. Nothing here logs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from backend_api.github.manifest import AppCredentials, GitHubAppCredentials
from backend_api.store.db import Conn

_COLUMNS = """app_id, slug, client_id, client_secret, webhook_secret, private_key_pem, owner_login, html_url,
              created_at"""


def claim_hash(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()


async def insert(conn: Conn, creds: AppCredentials, claim: str) -> bool:
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
        claim_hash(claim),
    )
    return bool(stored)


async def register_claim(conn: Conn, claim: str, ttl_seconds: int) -> datetime:
    """Allow one registration under ``claim`` for ``ttl_seconds``; expired claims are dropped."""
    await conn.execute("DELETE FROM github_app_setup_claims WHERE expires_at < now()")
    expires_at: datetime = await conn.fetchval(
        """INSERT INTO github_app_setup_claims (claim_hash, expires_at)
           VALUES ($1, now() + make_interval(secs => $2))
           ON CONFLICT (claim_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
           RETURNING expires_at""",
        claim_hash(claim), float(ttl_seconds),
    )
    return expires_at


async def claim_open(conn: Conn, claim: str) -> bool:
    """Whether ``claim`` was registered, has not expired, and has not been used yet."""
    return bool(await conn.fetchval(
        "SELECT true FROM github_app_setup_claims WHERE claim_hash = $1 AND expires_at >= now()",
        claim_hash(claim),
    ))


async def consume_claim(conn: Conn, claim: str) -> bool:
    """Use ``claim`` up; ``False`` when it was not open (expired, used, never registered)."""
    return bool(await conn.fetchval(
        "DELETE FROM github_app_setup_claims WHERE claim_hash = $1 AND expires_at >= now() RETURNING true",
        claim_hash(claim),
    ))


async def take(conn: Conn, *, claim: str) -> GitHubAppCredentials | None:
    """The App created under ``claim``, deleted as it is read: the database keeps no App secret
    longer than it takes the CLI to fetch it."""
    row = await conn.fetchrow(
        f"""DELETE FROM github_app_credentials WHERE app_id = (
                SELECT app_id FROM github_app_credentials WHERE claim_hash = $1
                ORDER BY created_at DESC, app_id DESC LIMIT 1 FOR UPDATE)
            RETURNING {_COLUMNS}""",
        claim_hash(claim),
    )
    if row is None:
        return None
    created_at: datetime = row["created_at"]
    return GitHubAppCredentials(
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
