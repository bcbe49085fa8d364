"""SQL of the Bitbucket tenancy aggregate: `bitbucket_workspaces`, `bitbucket_repositories`,
`bitbucket_accounts` (migration 0020; docs/bitbucket.md, "Tenancy" and "Identifiers").

UUIDs go in and come out bare and lower-case (`provider_clients.bitbucket.hook_secret.bare_uuid`);
the token only ever as ciphertext (backend_api/crypto.py encrypts it before it reaches here).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from backend_api.store.db import Conn


class WorkspaceStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DISCONNECTED = "DISCONNECTED"


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    tenant_id: int
    workspace_uuid: str
    slug: str
    name: str
    status: WorkspaceStatus
    token_ciphertext: bytes | None
    hook_uuid: str | None
    connected_at: datetime
    disconnected_at: datetime | None
    last_discovered_at: datetime | None
    last_error: str | None

    def __repr__(self) -> str:  # the ciphertext stays out of logs and tracebacks too
        return f"WorkspaceRow(tenant_id={self.tenant_id}, slug={self.slug!r}, status={self.status.value})"


@dataclass(frozen=True, slots=True)
class DiscoveredRepository:
    repo_uuid: str
    full_name: str
    main_branch: str | None
    private: bool


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    repo_id: int
    tenant_id: int
    repo_uuid: str
    full_name: str
    main_branch: str | None
    private: bool
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DiscoveryDiff:
    added: tuple[str, ...]  # full names
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_uuid: str
    account_id: str | None
    nickname: str = ""
    display_name: str = ""
    account_type: str = "user"


_WORKSPACE_COLUMNS = """tenant_id, workspace_uuid::text AS workspace_uuid, slug, name, status, token_ciphertext,
    hook_uuid::text AS hook_uuid, connected_at, disconnected_at, last_discovered_at, last_error"""


def _workspace(record: object | None) -> WorkspaceRow | None:
    if record is None:
        return None
    r = dict(record)  # type: ignore[call-overload]
    return WorkspaceRow(
        tenant_id=r["tenant_id"], workspace_uuid=r["workspace_uuid"], slug=r["slug"], name=r["name"],
        status=WorkspaceStatus(r["status"]),
        token_ciphertext=bytes(r["token_ciphertext"]) if r["token_ciphertext"] is not None else None,
        hook_uuid=r["hook_uuid"], connected_at=r["connected_at"], disconnected_at=r["disconnected_at"],
        last_discovered_at=r["last_discovered_at"], last_error=r["last_error"],
    )


async def upsert_workspace(
    conn: Conn, *, workspace_uuid: str, slug: str, name: str, token_ciphertext: bytes
) -> WorkspaceRow:
    """Connect (or reconnect) a workspace by its UUID: ACTIVE, the token replaced, the error cleared.

    A slug may have moved to another UUID (a workspace deleted and its slug taken again): the old
    row keeps its data but loses the slug (`<slug>~<tenant_id>`), so the unique index holds."""
    await conn.execute(
        """UPDATE bitbucket_workspaces SET slug = slug || '~' || tenant_id::text, updated_at = now()
           WHERE lower(slug) = lower($1) AND workspace_uuid <> $2::uuid""",
        slug, workspace_uuid,
    )
    record = await conn.fetchrow(
        f"""INSERT INTO bitbucket_workspaces AS w (workspace_uuid, slug, name, token_ciphertext)
            VALUES ($1::uuid, $2, $3, $4)
            ON CONFLICT (workspace_uuid) DO UPDATE SET
                slug = EXCLUDED.slug, name = EXCLUDED.name, token_ciphertext = EXCLUDED.token_ciphertext,
                status = 'ACTIVE', disconnected_at = NULL, last_error = NULL,
                connected_at = CASE WHEN w.status = 'ACTIVE' THEN w.connected_at ELSE now() END,
                updated_at = now()
            RETURNING {_WORKSPACE_COLUMNS}""",
        workspace_uuid, slug, name, token_ciphertext,
    )
    row = _workspace(record)
    assert row is not None
    return row


async def lock_slug(conn: Conn, slug: str) -> None:
    """Until the transaction ends, one connect or disconnect of this workspace at a time: two at once
    would both find no hook and both create one."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('bitbucket-workspace:' || lower($1), 0))", slug)


async def set_hook(conn: Conn, tenant_id: int, hook_uuid: str | None) -> None:
    await conn.execute(
        "UPDATE bitbucket_workspaces SET hook_uuid = $2::uuid, updated_at = now() WHERE tenant_id = $1",
        tenant_id, hook_uuid,
    )


async def replace_token(conn: Conn, tenant_id: int, token_ciphertext: bytes) -> None:
    await conn.execute(
        "UPDATE bitbucket_workspaces SET token_ciphertext = $2, updated_at = now() WHERE tenant_id = $1",
        tenant_id, token_ciphertext,
    )


async def get_by_id(conn: Conn, tenant_id: int) -> WorkspaceRow | None:
    return _workspace(await conn.fetchrow(
        f"SELECT {_WORKSPACE_COLUMNS} FROM bitbucket_workspaces WHERE tenant_id = $1", tenant_id
    ))


async def get_by_slug(conn: Conn, slug: str) -> WorkspaceRow | None:
    return _workspace(await conn.fetchrow(
        f"SELECT {_WORKSPACE_COLUMNS} FROM bitbucket_workspaces WHERE lower(slug) = lower($1)", slug
    ))


async def get_by_uuid(conn: Conn, workspace_uuid: str) -> WorkspaceRow | None:
    try:
        uuid.UUID(workspace_uuid)
    except ValueError:
        return None
    return _workspace(await conn.fetchrow(
        f"SELECT {_WORKSPACE_COLUMNS} FROM bitbucket_workspaces WHERE workspace_uuid = $1::uuid", workspace_uuid
    ))


async def list_workspaces(conn: Conn, status: WorkspaceStatus | None = None) -> list[WorkspaceRow]:
    records = await conn.fetch(
        f"""SELECT {_WORKSPACE_COLUMNS} FROM bitbucket_workspaces
            WHERE $1::text IS NULL OR status = $1 ORDER BY tenant_id""",
        status.value if status is not None else None,
    )
    return [row for row in map(_workspace, records) if row is not None]


async def count_active(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM bitbucket_workspaces WHERE status = 'ACTIVE'"))


async def one_active_ciphertext(conn: Conn) -> bytes | None:
    """Any ACTIVE workspace's token ciphertext: the start-up check that PRGATE_ENCRYPTION_KEY opens it."""
    value = await conn.fetchval(
        """SELECT token_ciphertext FROM bitbucket_workspaces
           WHERE status = 'ACTIVE' AND token_ciphertext IS NOT NULL ORDER BY updated_at DESC LIMIT 1"""
    )
    return bytes(value) if value is not None else None


async def repository_counts(conn: Conn) -> dict[int, int]:
    """tenant_id → repositories not removed."""
    records = await conn.fetch(
        "SELECT tenant_id, count(*) AS n FROM bitbucket_repositories WHERE removed_at IS NULL GROUP BY tenant_id"
    )
    return {r["tenant_id"]: int(r["n"]) for r in records}


async def apply_discovery(
    conn: Conn, tenant_id: int, repos: Sequence[DiscoveredRepository]
) -> DiscoveryDiff:
    """A complete listing of the workspace's repositories: new ones inserted (or back from removal),
    names and branches followed, those no longer listed marked removed. Call inside a transaction."""
    previous = {
        r["repo_uuid"]: r["full_name"]
        for r in await conn.fetch(
            """SELECT repo_uuid::text AS repo_uuid, full_name FROM bitbucket_repositories
               WHERE tenant_id = $1 AND removed_at IS NULL""",
            tenant_id,
        )
    }
    listed = {r.repo_uuid: r for r in repos}
    if repos:
        # A repository moved here from another workspace keeps its repo_id (same UUID).
        await conn.executemany(
            """INSERT INTO bitbucket_repositories AS r (tenant_id, repo_uuid, full_name, main_branch, private)
               VALUES ($1, $2::uuid, $3, $4, $5)
               ON CONFLICT (repo_uuid) DO UPDATE SET
                   tenant_id = EXCLUDED.tenant_id, full_name = EXCLUDED.full_name,
                   main_branch = EXCLUDED.main_branch, private = EXCLUDED.private,
                   added_at = CASE WHEN r.removed_at IS NULL AND r.tenant_id = EXCLUDED.tenant_id
                                   THEN r.added_at ELSE now() END,
                   removed_at = NULL""",
            [(tenant_id, r.repo_uuid, r.full_name, r.main_branch, r.private) for r in listed.values()],
        )
    gone = [u for u in previous if u not in listed]
    if gone:
        await conn.execute(
            """UPDATE bitbucket_repositories SET removed_at = now()
               WHERE tenant_id = $1 AND repo_uuid = ANY($2::uuid[]) AND removed_at IS NULL""",
            tenant_id, gone,
        )
    await conn.execute(
        """UPDATE bitbucket_workspaces SET last_discovered_at = now(), last_error = NULL, updated_at = now()
           WHERE tenant_id = $1""",
        tenant_id,
    )
    return DiscoveryDiff(
        added=tuple(sorted(listed[u].full_name for u in listed if u not in previous)),
        removed=tuple(sorted(previous[u] for u in gone)),
    )


async def record_error(conn: Conn, tenant_id: int, message: str) -> None:
    await conn.execute(
        "UPDATE bitbucket_workspaces SET last_error = $2, updated_at = now() WHERE tenant_id = $1",
        tenant_id, message[:2000],
    )


async def list_repositories(conn: Conn, tenant_id: int, *, include_removed: bool = False) -> list[RepositoryRow]:
    records = await conn.fetch(
        """SELECT repo_id, tenant_id, repo_uuid::text AS repo_uuid, full_name, main_branch, private, removed_at
           FROM bitbucket_repositories WHERE tenant_id = $1 AND ($2 OR removed_at IS NULL) ORDER BY lower(full_name)""",
        tenant_id, include_removed,
    )
    return [RepositoryRow(**dict(r)) for r in records]


async def repository_refs(conn: Conn, tenant_id: int, full_names: Iterable[str] | None = None) -> list[tuple[int, str]]:
    """(repo_id, full_name) of the workspace's repositories not removed; only ``full_names`` when given."""
    names = None if full_names is None else [n.lower() for n in full_names]
    records = await conn.fetch(
        """SELECT repo_id, full_name FROM bitbucket_repositories
           WHERE tenant_id = $1 AND removed_at IS NULL AND ($2::text[] IS NULL OR lower(full_name) = ANY($2::text[]))
           ORDER BY repo_id""",
        tenant_id, names,
    )
    return [(int(r["repo_id"]), str(r["full_name"])) for r in records]


async def active_repository(conn: Conn, tenant_id: int, repo_id: int) -> RepositoryRow | None:
    """The repository when it is (still) one of this ACTIVE workspace's: what a config read needs."""
    record = await conn.fetchrow(
        """SELECT r.repo_id, r.tenant_id, r.repo_uuid::text AS repo_uuid, r.full_name, r.main_branch, r.private,
                  r.removed_at
           FROM bitbucket_repositories r JOIN bitbucket_workspaces w ON w.tenant_id = r.tenant_id
           WHERE r.repo_id = $2 AND r.tenant_id = $1 AND r.removed_at IS NULL AND w.status = 'ACTIVE'""",
        tenant_id, repo_id,
    )
    return None if record is None else RepositoryRow(**dict(record))


async def accounts_named(conn: Conn, names: Sequence[str]) -> dict[str, list[int]]:
    """Each name (a nickname, case-insensitive, or an Atlassian `account_id`) → the user ids of the
    accounts prgate knows by it; a name no known account has is absent."""
    wanted = [n.lower() for n in dict.fromkeys(names)]
    if not wanted:
        return {}
    records = await conn.fetch(
        """SELECT x.name, a.user_id FROM unnest($1::text[]) AS x(name)
           JOIN bitbucket_accounts a ON lower(a.nickname) = x.name OR lower(a.account_id) = x.name
           ORDER BY x.name, a.user_id""",
        wanted,
    )
    found: dict[str, list[int]] = {}
    for r in records:
        found.setdefault(str(r["name"]), []).append(int(r["user_id"]))
    return found


async def repo_ids(conn: Conn, repo_uuids: Iterable[str]) -> dict[str, int]:
    """Repository UUID → repo_id, for the repositories prgate knows (removed ones too)."""
    wanted = list(dict.fromkeys(repo_uuids))
    if not wanted:
        return {}
    records = await conn.fetch(
        """SELECT repo_uuid::text AS repo_uuid, repo_id FROM bitbucket_repositories
           WHERE repo_uuid = ANY($1::uuid[])""",
        wanted,
    )
    return {r["repo_uuid"]: r["repo_id"] for r in records}


async def repository_id(conn: Conn, tenant_id: int, repo: DiscoveredRepository) -> int:
    return (await recorded_repository(conn, tenant_id, repo))[0]


async def recorded_repository(conn: Conn, tenant_id: int, repo: DiscoveredRepository) -> tuple[int, bool]:
    """The id of a repository named in a verified event, recording it (or its new name, or its move into
    this workspace) on the way: one created since the last discovery is known from its first event.
    The second value is True when this call made it one of the workspace's repositories (new, back
    from removal, or moved in): its config file has not been read for it yet."""
    record = await conn.fetchrow(
        """WITH before AS (
               SELECT tenant_id, removed_at FROM bitbucket_repositories WHERE repo_uuid = $2::uuid)
           INSERT INTO bitbucket_repositories AS r (tenant_id, repo_uuid, full_name, private, main_branch)
           VALUES ($1, $2::uuid, $3, $4, $5)
           ON CONFLICT (repo_uuid) DO UPDATE
              SET tenant_id = EXCLUDED.tenant_id, full_name = EXCLUDED.full_name, private = EXCLUDED.private,
                  main_branch = coalesce(EXCLUDED.main_branch, r.main_branch), removed_at = NULL
              -- Written only when something changed: most events name a repository exactly as stored.
              WHERE (r.tenant_id, r.full_name, r.private, r.main_branch, r.removed_at)
                    IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.full_name, EXCLUDED.private,
                                      coalesce(EXCLUDED.main_branch, r.main_branch), NULL::timestamptz)
           RETURNING repo_id, NOT EXISTS (
               SELECT 1 FROM before b WHERE b.tenant_id = $1 AND b.removed_at IS NULL) AS joined""",
        tenant_id, repo.repo_uuid, repo.full_name, repo.private, repo.main_branch,
    )
    if record is None:  # unchanged: the conditional update wrote nothing and returned nothing
        value = await conn.fetchval(
            "SELECT repo_id FROM bitbucket_repositories WHERE repo_uuid = $1::uuid", repo.repo_uuid
        )
        return int(value), False
    return int(record["repo_id"]), bool(record["joined"])


class AccountConflict(Exception):
    """An `account_id` paired with a UUID other than the one stored (or than another of the same
    batch): Atlassian pairs them one to one, so the payload is not one to trust."""


async def user_ids(conn: Conn, accounts: Sequence[AccountInfo]) -> dict[str, int]:
    """Account UUID → user_id, inserting accounts not seen before and refreshing the names of known ones.

    Keyed by the account UUID; the `account_id` (the Atlassian id) is filled in when it arrives, never
    cleared by a payload that lacks it. An `account_id` already held by another UUID raises
    `AccountConflict` (the statement fails whole: nothing is written)."""
    unique = list({a.account_uuid: a for a in accounts}.values())
    if not unique:
        return {}
    try:
        return await _upsert_accounts(conn, unique)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "bitbucket_accounts_account_id_key":
            raise
        raise AccountConflict("an account_id is already held by another account UUID") from None


async def _upsert_accounts(conn: Conn, unique: Sequence[AccountInfo]) -> dict[str, int]:
    records = await conn.fetch(
        """INSERT INTO bitbucket_accounts AS a (account_uuid, account_id, nickname, display_name, account_type)
           SELECT u::uuid, i, n, d, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
               AS x(u, i, n, d, t)
           ON CONFLICT (account_uuid) DO UPDATE SET
               account_id = COALESCE(EXCLUDED.account_id, a.account_id),
               nickname = EXCLUDED.nickname, display_name = EXCLUDED.display_name,
               account_type = EXCLUDED.account_type, updated_at = now()
           RETURNING account_uuid::text AS account_uuid, user_id""",
        [a.account_uuid for a in unique], [a.account_id for a in unique], [a.nickname for a in unique],
        [a.display_name for a in unique], [a.account_type for a in unique],
    )
    return {r["account_uuid"]: r["user_id"] for r in records}


async def disconnect(conn: Conn, tenant_id: int) -> None:
    """DISCONNECTED, hook and token forgotten (a reconnect brings a token of its own); data kept."""
    await conn.execute(
        """UPDATE bitbucket_workspaces SET status = 'DISCONNECTED', disconnected_at = now(), hook_uuid = NULL,
                                          token_ciphertext = NULL, updated_at = now()
           WHERE tenant_id = $1""",
        tenant_id,
    )


# Every gate table that keys rows by the tenant (installation_id) or by one of its repositories.
_BY_TENANT = ("bot_actions", "challenges", "contributors", "decided_pull_requests", "parked_pull_request_events",
              "repo_config_files", "repo_config_stale", "reconcile_repairs", "webhook_deliveries")
_BY_REPO = ("repo_settings", "pr_comments")


async def purge(conn: Conn, tenant_id: int) -> dict[str, int]:
    """Delete everything prgate holds of a workspace (`disconnect --purge`): its rows in the gate
    tables, its repositories and the workspace row. Accounts are not the tenant's (one person may
    contribute to many workspaces) and stay. Call inside a transaction. Returns rows deleted per table."""
    deleted: dict[str, int] = {}
    repo_list = [r["repo_id"] for r in await conn.fetch(
        "SELECT repo_id FROM bitbucket_repositories WHERE tenant_id = $1", tenant_id
    )]
    for table in _BY_REPO:
        result: str = await conn.execute(f"DELETE FROM {table} WHERE repo_id = ANY($1::bigint[])", repo_list)
        deleted[table] = int(result.split()[-1])
    for table in _BY_TENANT:
        result = await conn.execute(f"DELETE FROM {table} WHERE installation_id = $1", tenant_id)
        deleted[table] = int(result.split()[-1])
    result = await conn.execute("DELETE FROM bitbucket_repositories WHERE tenant_id = $1", tenant_id)
    deleted["bitbucket_repositories"] = int(result.split()[-1])
    result = await conn.execute("DELETE FROM bitbucket_workspaces WHERE tenant_id = $1", tenant_id)
    deleted["bitbucket_workspaces"] = int(result.split()[-1])
    return deleted


async def repository_by_id(conn: Conn, repo_id: int) -> RepositoryRow | None:
    """The Bitbucket repository ``repo_id`` names (removed ones too); None: no Bitbucket repository."""
    record = await conn.fetchrow(
        """SELECT repo_id, tenant_id, repo_uuid::text AS repo_uuid, full_name, main_branch, private, removed_at
           FROM bitbucket_repositories WHERE repo_id = $1""",
        repo_id,
    )
    return None if record is None else RepositoryRow(**dict(record))


async def repo_id_by_name(conn: Conn, full_name: str) -> int | None:
    """The repository a ``workspace/slug`` name (Bitbucket's names ignore case) stands for; a name held
    twice (a repository removed, its name reused) is the one not removed, else the newest."""
    value = await conn.fetchval(
        """SELECT repo_id FROM bitbucket_repositories WHERE lower(full_name) = lower($1)
           ORDER BY (removed_at IS NULL) DESC, repo_id DESC LIMIT 1""",
        full_name,
    )
    return int(value) if value is not None else None


async def account_of_user(conn: Conn, user_id: int) -> AccountInfo | None:
    """The Bitbucket account behind a backend user id (a session's), None when it is none."""
    record = await conn.fetchrow(
        """SELECT account_uuid::text AS account_uuid, account_id, nickname, display_name, account_type
           FROM bitbucket_accounts WHERE user_id = $1""",
        user_id,
    )
    return None if record is None else AccountInfo(**dict(record))
