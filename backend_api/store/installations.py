"""SQL for the installation aggregate: `github_installations` and its repository membership."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend_api.store.db import Conn
from shared_contracts.events import Account, InstallationInfo, Repository
from shared_contracts.owner import GitHubAppStatus, InstallationStatus


@dataclass(frozen=True, slots=True)
class InstallationRow:
    installation_id: int
    account_login: str
    status: InstallationStatus
    repository_selection: str


async def upsert(
    conn: Conn, info: InstallationInfo, *, reactivate: bool
) -> InstallationStatus:
    """Record account metadata; `reactivate` (installation.created) also clears a previous deletion.

    Returns the installation's status after the write. A row first seen through
    any event is ACTIVE unless the payload says it is suspended.
    """
    initial = "SUSPENDED" if info.suspended_at else "ACTIVE"
    status = await conn.fetchval(
        """INSERT INTO github_installations AS gi
               (installation_id, account_id, account_login, account_type, repository_selection, status,
                suspended_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 = 'SUSPENDED' THEN now() END)
           ON CONFLICT (installation_id) DO UPDATE SET
               account_id = EXCLUDED.account_id,
               account_login = EXCLUDED.account_login,
               account_type = EXCLUDED.account_type,
               repository_selection = EXCLUDED.repository_selection,
               status = CASE WHEN $7 THEN EXCLUDED.status ELSE gi.status END,
               installed_at = CASE WHEN $7 AND gi.status = 'DELETED' THEN now() ELSE gi.installed_at END,
               deleted_at = CASE WHEN $7 THEN NULL ELSE gi.deleted_at END,
               updated_at = now()
           RETURNING status""",
        info.id, info.account.id, info.account.login, info.account.type,
        info.repository_selection, initial, reactivate,
    )
    return InstallationStatus(status)


async def set_status(conn: Conn, installation_id: int, status: InstallationStatus) -> None:
    await conn.execute(
        """UPDATE github_installations SET
               status = $2,
               suspended_at = CASE WHEN $2 = 'SUSPENDED' THEN now() ELSE suspended_at END,
               unsuspended_at = CASE WHEN $2 = 'ACTIVE' AND status = 'SUSPENDED' THEN now()
                                     ELSE unsuspended_at END,
               deleted_at = CASE WHEN $2 = 'DELETED' THEN now() ELSE deleted_at END,
               updated_at = now()
           WHERE installation_id = $1""",
        installation_id, status.value,
    )


async def add_repositories(
    conn: Conn, installation_id: int, repos: Sequence[Repository]
) -> None:
    if not repos:
        return
    await conn.executemany(
        """INSERT INTO github_installation_repositories (installation_id, repo_id, full_name, private)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (installation_id, repo_id) DO UPDATE SET
               full_name = EXCLUDED.full_name, private = EXCLUDED.private,
               added_at = CASE WHEN github_installation_repositories.removed_at IS NULL
                               THEN github_installation_repositories.added_at ELSE now() END,
               removed_at = NULL""",
        [(installation_id, r.id, r.full_name, r.private) for r in repos],
    )


async def remove_repositories(
    conn: Conn, installation_id: int, repo_ids: Sequence[int]
) -> None:
    await conn.execute(
        """UPDATE github_installation_repositories SET removed_at = now()
           WHERE installation_id = $1 AND repo_id = ANY($2::bigint[]) AND removed_at IS NULL""",
        installation_id, list(repo_ids),
    )


async def rename_repository(conn: Conn, repo_id: int, full_name: str) -> bool:
    """A repository id's new name, wherever prgate shows it: membership, pending challenges, open
    actions (they are carried out by id; the name is for logs and links). False: id unknown."""
    result: str = await conn.execute(
        "UPDATE github_installation_repositories SET full_name = $2 WHERE repo_id = $1 AND full_name <> $2",
        repo_id, full_name,
    )
    known = int(result.split()[-1]) > 0 or bool(
        await conn.fetchval("SELECT true FROM github_installation_repositories WHERE repo_id = $1 LIMIT 1", repo_id)
    )
    await conn.execute(
        """UPDATE challenges SET repo_full_name = $2
           WHERE repo_id = $1 AND status = 'PENDING' AND repo_full_name <> $2""",
        repo_id, full_name,
    )
    await conn.execute(
        """UPDATE bot_actions SET repo_full_name = $2, updated_at = now()
           WHERE repo_id = $1 AND status IN ('PENDING', 'CLAIMED') AND repo_full_name <> $2""",
        repo_id, full_name,
    )
    return known


async def remove_all_repositories(conn: Conn, installation_id: int) -> None:
    await conn.execute(
        """UPDATE github_installation_repositories SET removed_at = now()
           WHERE installation_id = $1 AND removed_at IS NULL""",
        installation_id,
    )


async def repo_id_by_name(conn: Conn, full_name: str) -> int | None:
    """The repository id a stored ``owner/repo`` name (GitHub's names ignore case) stands for; None if
    no row holds it. A name can be held twice after a rename prgate missed and the old name's reuse:
    the installed repository added last wins (the access check that follows is by id either way)."""
    value = await conn.fetchval(
        """SELECT r.repo_id
           FROM github_installation_repositories r
           JOIN github_installations i USING (installation_id)
           WHERE lower(r.full_name) = lower($1)
           ORDER BY (r.removed_at IS NULL AND i.status <> 'DELETED') DESC, r.added_at DESC, r.repo_id DESC
           LIMIT 1""",
        full_name,
    )
    return int(value) if value is not None else None


async def app_status(conn: Conn, repo_id: int) -> GitHubAppStatus:
    """Install status of a repository, resolved only from membership rows (never from logins)."""
    row = await conn.fetchrow(
        """SELECT r.full_name, r.removed_at IS NULL AS member, i.installation_id, i.status,
                  i.account_login, i.repository_selection
           FROM github_installation_repositories r
           JOIN github_installations i USING (installation_id)
           WHERE r.repo_id = $1
           ORDER BY (r.removed_at IS NULL AND i.status <> 'DELETED') DESC,
                    (i.status <> 'DELETED') DESC, r.added_at DESC
           LIMIT 1""",
        repo_id,
    )
    if row is None:
        return GitHubAppStatus(
            repo_id=repo_id, repo_full_name=None, installed=False, installation_id=None,
            installation_status=InstallationStatus.NOT_INSTALLED, account_login=None,
            repository_selection=None,
        )
    status = InstallationStatus(row["status"])
    if status is InstallationStatus.DELETED:
        return GitHubAppStatus(
            repo_id=repo_id, repo_full_name=row["full_name"], installed=False,
            installation_id=row["installation_id"], installation_status=status,
            account_login=row["account_login"], repository_selection=row["repository_selection"],
        )
    if not row["member"]:
        # Removed from an installation that still exists: not installed on this repo.
        return GitHubAppStatus(
            repo_id=repo_id, repo_full_name=row["full_name"], installed=False, installation_id=None,
            installation_status=InstallationStatus.NOT_INSTALLED, account_login=None,
            repository_selection=None,
        )
    return GitHubAppStatus(
        repo_id=repo_id, repo_full_name=row["full_name"], installed=True,
        installation_id=row["installation_id"], installation_status=status,
        account_login=row["account_login"], repository_selection=row["repository_selection"],
    )


@dataclass(frozen=True, slots=True)
class InstallationDetail:
    """Everything the backend records about an installation (reconciliation compares it with GitHub)."""

    installation_id: int
    account_id: int
    account_login: str
    account_type: str
    repository_selection: str
    status: InstallationStatus
    updated_at: datetime

    def info(self) -> InstallationInfo:
        return InstallationInfo(
            id=self.installation_id,
            account=Account(id=self.account_id, login=self.account_login, type=self.account_type),
            repository_selection="all" if self.repository_selection == "all" else "selected",
        )


_DETAIL = """SELECT installation_id, account_id, account_login, account_type, repository_selection, status,
                    updated_at
             FROM github_installations"""


def _detail(row: asyncpg.Record) -> InstallationDetail:
    return InstallationDetail(**{**dict(row), "status": InstallationStatus(row["status"])})


async def detail(conn: Conn, installation_id: int) -> InstallationDetail | None:
    row = await conn.fetchrow(f"{_DETAIL} WHERE installation_id = $1", installation_id)
    return None if row is None else _detail(row)


async def live(conn: Conn) -> list[InstallationDetail]:
    """Installations not deleted, by id."""
    rows = await conn.fetch(f"{_DETAIL} WHERE status <> 'DELETED' ORDER BY installation_id")
    return [_detail(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Membership:
    repo_id: int
    full_name: str
    private: bool
    added_at: datetime
    removed_at: datetime | None  # None: a member now


async def is_active_member(conn: Conn, installation_id: int, repo_id: int) -> bool:
    """The repository is a current member of an active installation (what may be read with its token)."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM github_installation_repositories r
                          JOIN github_installations i USING (installation_id)
                          WHERE r.installation_id = $1 AND r.repo_id = $2 AND r.removed_at IS NULL
                            AND i.status = 'ACTIVE')""",
        installation_id, repo_id,
    ))


async def memberships(conn: Conn, installation_id: int) -> list[Membership]:
    """Every repository ever recorded for the installation, current members and removed ones."""
    rows = await conn.fetch(
        """SELECT repo_id, full_name, private, added_at, removed_at FROM github_installation_repositories
           WHERE installation_id = $1 ORDER BY repo_id""",
        installation_id,
    )
    return [Membership(**dict(r)) for r in rows]


async def lock(conn: Conn, installation_id: int) -> None:
    """Serialize changes to one installation for the rest of the transaction (events and reconciliation)."""
    await conn.execute("SELECT pg_advisory_xact_lock(-1, $1)", installation_id % (2**31))
