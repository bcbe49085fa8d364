"""Reads across providers: the repositories prgate monitors and their tenants (GitHub installations,
Bitbucket workspaces). Writes stay in each provider's own store module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from backend_api.auth.api_tokens import Provider, RepoTenant
from backend_api.store.db import Conn


@dataclass(frozen=True, slots=True)
class Monitored:
    repo_id: int
    provider: Provider
    full_name: str
    tenant_id: int
    tenant_name: str

    @property
    def tenant(self) -> RepoTenant:
        return RepoTenant(self.provider, self.tenant_id)


async def monitored(conn: Conn) -> list[Monitored]:
    """Current members of installations that are not deleted, and repositories of connected
    workspaces that the last discovery still found; by provider, then id."""
    rows = await conn.fetch(
        """SELECT r.repo_id, 'github' AS provider, r.full_name, i.installation_id AS tenant_id,
                  i.account_login AS tenant_name
           FROM github_installation_repositories r JOIN github_installations i USING (installation_id)
           WHERE r.removed_at IS NULL AND i.status <> 'DELETED'
           UNION ALL
           SELECT r.repo_id, 'bitbucket', r.full_name, w.tenant_id, w.slug
           FROM bitbucket_repositories r JOIN bitbucket_workspaces w USING (tenant_id)
           WHERE r.removed_at IS NULL AND w.status = 'ACTIVE'
           ORDER BY provider DESC, repo_id"""
    )
    return [
        Monitored(r["repo_id"], cast(Provider, r["provider"]), r["full_name"], r["tenant_id"], r["tenant_name"])
        for r in rows
    ]


async def workspace_id_by_slug(conn: Conn, slug: str) -> int | None:
    """A connected workspace's id (Bitbucket slugs ignore case)."""
    value = await conn.fetchval(
        "SELECT tenant_id FROM bitbucket_workspaces WHERE lower(slug) = lower($1) AND status = 'ACTIVE'", slug
    )
    return int(value) if value is not None else None
