"""SQL mapping Bitbucket's identifiers to the backend's ids (docs/bitbucket.md, "Identifiers").

What a Bitbucket event needs before the one decision can read it: the workspace it came through, and
ids for its repository and the people in it. Repositories and accounts seen in a verified event are
recorded on the way (a repository created since the last discovery is known from its first event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from backend_api.store.db import Conn
from shared_contracts.bitbucket import BitbucketAccount, BitbucketRepository

WorkspaceStatus = Literal["ACTIVE", "DISCONNECTED"]


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    tenant_id: int
    slug: str
    status: WorkspaceStatus


async def workspace_by_uuid(conn: Conn, workspace_uuid: str) -> WorkspaceRef | None:
    row = await conn.fetchrow(
        "SELECT tenant_id, slug, status FROM bitbucket_workspaces WHERE workspace_uuid = $1::uuid", workspace_uuid
    )
    if row is None:
        return None
    return WorkspaceRef(tenant_id=row["tenant_id"], slug=row["slug"], status=row["status"])


async def repository_id(conn: Conn, tenant_id: int, repo: BitbucketRepository) -> int:
    """The repository's id, recording it (or its new name, or its move into this workspace) on the way."""
    value = await conn.fetchval(
        """INSERT INTO bitbucket_repositories AS r (tenant_id, repo_uuid, full_name, private, main_branch)
           VALUES ($1, $2::uuid, $3, $4, $5)
           ON CONFLICT (repo_uuid) DO UPDATE
              SET tenant_id = EXCLUDED.tenant_id, full_name = EXCLUDED.full_name, private = EXCLUDED.private,
                  main_branch = coalesce(EXCLUDED.main_branch, r.main_branch), removed_at = NULL
              -- Written only when something changed: most events name a repository exactly as stored.
              WHERE (r.tenant_id, r.full_name, r.private, r.main_branch, r.removed_at)
                    IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.full_name, EXCLUDED.private,
                                      coalesce(EXCLUDED.main_branch, r.main_branch), NULL::timestamptz)
           RETURNING repo_id""",
        tenant_id, repo.uuid, repo.full_name, repo.private, repo.main_branch,
    )
    if value is None:  # unchanged: the conditional update wrote nothing and returned nothing
        value = await conn.fetchval("SELECT repo_id FROM bitbucket_repositories WHERE repo_uuid = $1::uuid", repo.uuid)
    return int(value)


async def account_ids(conn: Conn, accounts: Sequence[BitbucketAccount]) -> dict[str, int]:
    """Each account's id by its (bare) UUID, recording new accounts and current names."""
    unique = {a.uuid: a for a in accounts}
    rows = await conn.fetch(
        """INSERT INTO bitbucket_accounts (account_uuid, account_id, nickname, display_name, account_type)
           SELECT a.uuid::uuid, a.account_id, a.nickname, a.display_name, a.kind
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                AS a(uuid, account_id, nickname, display_name, kind)
           ORDER BY a.uuid
           ON CONFLICT (account_uuid) DO UPDATE
              SET account_id = coalesce(EXCLUDED.account_id, bitbucket_accounts.account_id),
                  nickname = EXCLUDED.nickname, display_name = EXCLUDED.display_name,
                  account_type = EXCLUDED.account_type, updated_at = now()
           RETURNING account_uuid::text AS uuid, user_id""",
        list(unique), [a.account_id for a in unique.values()], [a.nickname for a in unique.values()],
        [a.display_name for a in unique.values()], [a.type for a in unique.values()],
    )
    return {str(r["uuid"]): int(r["user_id"]) for r in rows}
