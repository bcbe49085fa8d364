"""Read models of the operator dashboard (every tenant): installations and Bitbucket workspaces with
their repositories, challenges, outbox health, recent webhook deliveries. Nothing here ever selects a link token's hash.
The owner API's reads are in `store/owner.py`, the answer hash with the settings (`repo_settings.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend_api.store.db import Conn

# ---- dashboard: installations ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepoRow:
    repo_id: int
    full_name: str
    private: bool
    added_at: datetime
    removed_at: datetime | None
    pending_challenges: int


@dataclass(frozen=True, slots=True)
class InstallationRow:
    installation_id: int
    account_login: str
    account_type: str
    status: str
    repository_selection: str
    installed_at: datetime
    updated_at: datetime
    repositories: tuple[RepoRow, ...]


async def installations_overview(conn: Conn) -> list[InstallationRow]:
    installs = await conn.fetch(
        """SELECT installation_id, account_login, account_type, status, repository_selection, installed_at,
                  updated_at
           FROM github_installations
           ORDER BY (status = 'DELETED'), lower(account_login), installation_id"""
    )
    repos = await conn.fetch(
        """SELECT r.installation_id, r.repo_id, r.full_name, r.private, r.added_at, r.removed_at,
                  (SELECT count(*) FROM challenges c
                   WHERE c.repo_id = r.repo_id AND c.installation_id = r.installation_id
                     AND c.status = 'PENDING') AS pending_challenges
           FROM github_installation_repositories r
           ORDER BY (r.removed_at IS NOT NULL), lower(r.full_name)"""
    )
    by_installation: dict[int, list[RepoRow]] = {}
    for r in repos:
        by_installation.setdefault(r["installation_id"], []).append(RepoRow(
            repo_id=r["repo_id"], full_name=r["full_name"], private=r["private"], added_at=r["added_at"],
            removed_at=r["removed_at"], pending_challenges=r["pending_challenges"],
        ))
    return [
        InstallationRow(
            installation_id=i["installation_id"], account_login=i["account_login"],
            account_type=i["account_type"], status=i["status"], repository_selection=i["repository_selection"],
            installed_at=i["installed_at"], updated_at=i["updated_at"],
            repositories=tuple(by_installation.get(i["installation_id"], ())),
        )
        for i in installs
    ]


@dataclass(frozen=True, slots=True)
class WorkspaceOverview:
    """A Bitbucket workspace beside the installations: its connection and its repositories."""

    tenant_id: int
    slug: str
    name: str
    status: str  # ACTIVE (connected) | DISCONNECTED
    connected_at: datetime
    disconnected_at: datetime | None
    last_discovered_at: datetime | None
    last_error: str | None
    repositories: tuple[RepoRow, ...]


async def workspaces_overview(conn: Conn) -> list[WorkspaceOverview]:
    """Every workspace ever connected (connected first), with the repositories discovery recorded."""
    workspaces = await conn.fetch(
        """SELECT tenant_id, slug, name, status, connected_at, disconnected_at, last_discovered_at, last_error
           FROM bitbucket_workspaces
           ORDER BY (status <> 'ACTIVE'), lower(slug), tenant_id"""
    )
    repos = await conn.fetch(
        """SELECT r.tenant_id, r.repo_id, r.full_name, r.private, r.added_at, r.removed_at,
                  (SELECT count(*) FROM challenges c
                   WHERE c.repo_id = r.repo_id AND c.installation_id = r.tenant_id
                     AND c.status = 'PENDING') AS pending_challenges
           FROM bitbucket_repositories r
           ORDER BY (r.removed_at IS NOT NULL), lower(r.full_name)"""
    )
    by_tenant: dict[int, list[RepoRow]] = {}
    for r in repos:
        by_tenant.setdefault(r["tenant_id"], []).append(RepoRow(
            repo_id=r["repo_id"], full_name=r["full_name"], private=r["private"], added_at=r["added_at"],
            removed_at=r["removed_at"], pending_challenges=r["pending_challenges"],
        ))
    return [
        WorkspaceOverview(
            tenant_id=w["tenant_id"], slug=w["slug"], name=w["name"], status=w["status"],
            connected_at=w["connected_at"], disconnected_at=w["disconnected_at"],
            last_discovered_at=w["last_discovered_at"], last_error=w["last_error"],
            repositories=tuple(by_tenant.get(w["tenant_id"], ())),
        )
        for w in workspaces
    ]


# ---- dashboard: challenges ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChallengeRow:
    challenge_id: int
    installation_id: int
    repo_full_name: str
    pr_number: int
    author_login: str
    status: str
    created_at: datetime
    deadline_at: datetime
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class ChallengesOverview:
    now: datetime  # the database's clock, which the deadline sweeper also uses
    pending_total: int
    pending: tuple[ChallengeRow, ...]  # soonest deadline first
    resolved: tuple[ChallengeRow, ...]  # most recently resolved first


_CHALLENGE_COLUMNS = (
    "challenge_id, installation_id, repo_full_name, pr_number, author_login, status, created_at, deadline_at, "
    "resolved_at, resolution"
)


def _challenge(row: asyncpg.Record) -> ChallengeRow:
    return ChallengeRow(**dict(row))


async def challenges_overview(conn: Conn, limit: int = 100) -> ChallengesOverview:
    now = await conn.fetchval("SELECT now()")
    total = await conn.fetchval("SELECT count(*) FROM challenges WHERE status = 'PENDING'")
    pending = await conn.fetch(
        f"""SELECT {_CHALLENGE_COLUMNS} FROM challenges WHERE status = 'PENDING'
            ORDER BY deadline_at, challenge_id LIMIT $1""",
        limit,
    )
    resolved = await conn.fetch(
        f"""SELECT {_CHALLENGE_COLUMNS} FROM challenges WHERE status <> 'PENDING'
            ORDER BY resolved_at DESC NULLS LAST, challenge_id DESC LIMIT $1""",
        limit,
    )
    return ChallengesOverview(
        now=now, pending_total=int(total), pending=tuple(map(_challenge, pending)),
        resolved=tuple(map(_challenge, resolved)),
    )


# ---- dashboard: outbox -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionRow:
    action_id: int
    action_type: str
    status: str
    installation_id: int
    repo_full_name: str
    pr_number: int
    attempt: int
    max_attempts: int
    last_error: str | None
    next_attempt_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxOverview:
    now: datetime
    pending: int  # waiting to be claimed (due now or backing off)
    pending_due: int  # of those, claimable now
    leased: int  # CLAIMED by a worker
    failed: int  # gave up (terminal)
    oldest_pending_at: datetime | None
    failures: tuple[ActionRow, ...]  # FAILED, most recent first
    retrying: tuple[ActionRow, ...]  # PENDING after a failed attempt, most recent first


_ACTION_COLUMNS = (
    "action_id, action_type, status, installation_id, repo_full_name, pr_number, attempt, max_attempts, "
    "last_error, next_attempt_at, updated_at"
)


def _action(row: asyncpg.Record) -> ActionRow:
    return ActionRow(**dict(row))


async def outbox_overview(conn: Conn, limit: int = 50) -> OutboxOverview:
    counts = await conn.fetchrow(
        """SELECT now() AS now,
                  count(*) FILTER (WHERE status = 'PENDING') AS pending,
                  count(*) FILTER (WHERE status = 'PENDING' AND next_attempt_at <= now()) AS pending_due,
                  count(*) FILTER (WHERE status = 'CLAIMED') AS leased,
                  count(*) FILTER (WHERE status = 'FAILED') AS failed,
                  min(created_at) FILTER (WHERE status = 'PENDING') AS oldest_pending_at
           FROM bot_actions WHERE status IN ('PENDING', 'CLAIMED', 'FAILED')"""
    )
    assert counts is not None
    failures = await conn.fetch(
        f"""SELECT {_ACTION_COLUMNS} FROM bot_actions WHERE status = 'FAILED'
            ORDER BY updated_at DESC, action_id DESC LIMIT $1""",
        limit,
    )
    retrying = await conn.fetch(
        f"""SELECT {_ACTION_COLUMNS} FROM bot_actions
            WHERE status = 'PENDING' AND attempt > 0 AND last_error IS NOT NULL
            ORDER BY updated_at DESC, action_id DESC LIMIT $1""",
        limit,
    )
    return OutboxOverview(
        now=counts["now"], pending=counts["pending"], pending_due=counts["pending_due"], leased=counts["leased"],
        failed=counts["failed"], oldest_pending_at=counts["oldest_pending_at"],
        failures=tuple(map(_action, failures)), retrying=tuple(map(_action, retrying)),
    )


# ---- dashboard: webhook deliveries -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    event_name: str
    action: str
    installation_id: int | None
    repo_id: int | None
    repo_full_name: str | None
    status: str
    decision: str | None
    challenge_id: int | None
    reason: str | None
    received_at: datetime


async def recent_deliveries(conn: Conn, limit: int = 100) -> list[DeliveryRow]:
    # A repository id is GitHub's or Bitbucket's (disjoint ranges): its name from whichever holds it.
    rows = await conn.fetch(
        """SELECT d.delivery_id, d.event_name, d.action, d.installation_id, d.repo_id,
                  COALESCE(r.full_name, b.full_name) AS repo_full_name,
                  d.status, d.decision, d.challenge_id, d.reason, d.received_at
           FROM webhook_deliveries d
           LEFT JOIN LATERAL (
               SELECT full_name FROM github_installation_repositories m
               WHERE m.repo_id = d.repo_id ORDER BY m.added_at DESC LIMIT 1
           ) r ON true
           LEFT JOIN bitbucket_repositories b ON b.repo_id = d.repo_id
           ORDER BY d.received_at DESC, d.delivery_id
           LIMIT $1""",
        limit,
    )
    return [DeliveryRow(**dict(r)) for r in rows]
