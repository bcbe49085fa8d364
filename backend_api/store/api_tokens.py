"""SQL of API tokens (migration 0021, docs/api-tokens.md). Only hashes are stored or compared."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend_api.auth.api_tokens import Grant
from backend_api.store.db import Conn
from shared_contracts.api_tokens import ApiTokenInfo, TokenScope


class NameTaken(Exception):
    """A live token already has this name."""


_INFO = """SELECT t.token_id, t.name, t.scope, t.installation_id, t.workspace_tenant_id AS workspace_id,
                  w.slug AS workspace, t.jira_site, t.created_at, t.last_used_at, t.revoked_at
           FROM api_tokens t LEFT JOIN bitbucket_workspaces w ON w.tenant_id = t.workspace_tenant_id"""


def _info(row: asyncpg.Record | None) -> ApiTokenInfo:
    assert row is not None  # read back in the call that wrote it
    return ApiTokenInfo.model_validate(dict(row))


async def create(conn: Conn, name: str, grant: Grant, digest: bytes) -> ApiTokenInfo:
    try:
        token_id = await conn.fetchval(
            """INSERT INTO api_tokens (name, scope, installation_id, workspace_tenant_id, jira_site, token_hash)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING token_id""",
            name, grant.scope.value, grant.installation_id, grant.workspace_id, grant.jira_site, digest,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "api_tokens_live_name_idx":
            raise NameTaken(name) from None
        raise
    row = await conn.fetchrow(f"{_INFO} WHERE t.token_id = $1", token_id)
    return _info(row)


async def list_all(conn: Conn) -> list[ApiTokenInfo]:
    rows = await conn.fetch(f"{_INFO} ORDER BY t.token_id")
    return [_info(r) for r in rows]


@dataclass(frozen=True, slots=True)
class StoredToken:
    token_id: int
    name: str
    grant: Grant
    last_used_at: datetime | None
    revoked: bool


async def by_hash(conn: Conn, digest: bytes) -> StoredToken | None:
    row = await conn.fetchrow(
        """SELECT token_id, name, scope, installation_id, workspace_tenant_id, jira_site, last_used_at,
                  revoked_at IS NOT NULL AS revoked
           FROM api_tokens WHERE token_hash = $1""",
        digest,
    )
    if row is None:
        return None
    grant = Grant(TokenScope(row["scope"]), row["installation_id"], row["workspace_tenant_id"], row["jira_site"])
    return StoredToken(row["token_id"], row["name"], grant, row["last_used_at"], row["revoked"])


async def touch(conn: Conn, token_id: int) -> None:
    """Record a use; a replica that lost the race to another one within the minute writes nothing."""
    await conn.execute(
        """UPDATE api_tokens SET last_used_at = now()
           WHERE token_id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        token_id,
    )


async def revoke(conn: Conn, name_or_id: str) -> tuple[ApiTokenInfo, bool] | None:
    """Revoke the live token of that name, or the token of that id; ``(token, was already revoked)``,
    None when there is no such token."""
    if name_or_id.isdigit():
        if int(name_or_id) > 2**63 - 1:
            return None
        row = await conn.fetchrow(
            "SELECT token_id, revoked_at IS NOT NULL AS revoked FROM api_tokens WHERE token_id = $1",
            int(name_or_id),
        )
    else:
        row = await conn.fetchrow(
            """SELECT token_id, false AS revoked FROM api_tokens
               WHERE lower(name) = lower($1) AND revoked_at IS NULL""",
            name_or_id,
        )
    if row is None:
        return None
    await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL", row["token_id"]
    )
    info = await conn.fetchrow(f"{_INFO} WHERE t.token_id = $1", row["token_id"])
    return _info(info), bool(row["revoked"])
