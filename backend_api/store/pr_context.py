"""What decisions about pull requests need to know, read for a whole batch in one round trip.

The tenant and its repositories come through the provider-neutral views `gate_tenants` and
`gate_tenant_repositories` (a GitHub installation or a Bitbucket workspace; migration 0022).

It reads across aggregates (installation, membership, settings, contributors, challenges) on
purpose: the ingest path is round-trip bound (docs/benchmarks.md, ingest profile), and these six
facts were six statements per delivery. Call it after `challenges.lock_pull_requests`, in the same
transaction, so that the facts about the PRs' challenges cannot change before the decisions are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import asyncpg

from backend_api.challenges.config_file import effective
from backend_api.challenges.decide import ChallengeStatus
from backend_api.store import repo_settings
from backend_api.store.db import Conn
from backend_api.store.installations import InstallationRow
from shared_contracts.owner import InstallationStatus, RepoSettings

_STATUSES: frozenset[str] = frozenset(get_args(ChallengeStatus))

_FACTS = f"""
SELECT i.tenant_id AS installation_id, i.account_login, i.status, i.repository_selection,
       EXISTS (SELECT 1 FROM gate_tenant_repositories r
               WHERE r.tenant_id = k.installation_id AND r.repo_id = k.repo_id
                 AND r.removed_at IS NULL) AS member,
       s.repo_id IS NOT NULL AS has_settings,
       {", ".join(f"s.{c}" for c in repo_settings.COLUMNS)}, f.config AS file_config,
       EXISTS (SELECT 1 FROM contributors c
               WHERE c.installation_id = k.installation_id AND c.github_user_id = k.author_id) AS author_verified,
       (SELECT challenge_id FROM challenges
        WHERE repo_id = k.repo_id AND pr_number = k.pr_number AND status = 'PENDING'
        ORDER BY challenge_id DESC LIMIT 1) AS pending_challenge_id,
       (SELECT head_sha FROM challenges
        WHERE repo_id = k.repo_id AND pr_number = k.pr_number AND status = 'PENDING'
        ORDER BY challenge_id DESC LIMIT 1) AS pending_head_sha,
       (SELECT status FROM challenges
        WHERE repo_id = k.repo_id AND pr_number = k.pr_number ORDER BY challenge_id DESC LIMIT 1) AS latest_status
FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[]) WITH ORDINALITY
     AS k(installation_id, repo_id, pr_number, author_id, n)
LEFT JOIN gate_tenants i ON i.tenant_id = k.installation_id
LEFT JOIN repo_settings s ON s.repo_id = k.repo_id
LEFT JOIN repo_config_files f ON f.repo_id = k.repo_id
ORDER BY k.n
"""


@dataclass(frozen=True, slots=True)
class PrFacts:
    installation: InstallationRow | None
    repo_is_member: bool
    settings: RepoSettings
    author_verified: bool
    pending_challenge_id: int | None
    latest_challenge_status: ChallengeStatus | None
    pending_head_sha: str | None = None


@dataclass(frozen=True, slots=True)
class PrKey:
    installation_id: int
    repo_id: int
    pr_number: int
    author_id: int


async def load_many(conn: Conn, keys: Sequence[PrKey]) -> list[PrFacts]:
    """The facts of each pull request, in the order of `keys`."""
    rows = await conn.fetch(
        _FACTS, [k.installation_id for k in keys], [k.repo_id for k in keys], [k.pr_number for k in keys],
        [k.author_id for k in keys],
    )
    return [_facts(row) for row in rows]


def _facts(row: asyncpg.Record) -> PrFacts:
    installation = None
    if row["installation_id"] is not None:
        installation = InstallationRow(
            installation_id=row["installation_id"], account_login=row["account_login"],
            status=InstallationStatus(row["status"]), repository_selection=row["repository_selection"],
        )
    settings_row = {c: row[c] for c in repo_settings.COLUMNS} if row["has_settings"] else None
    latest = row["latest_status"]
    if latest is not None and latest not in _STATUSES:
        raise ValueError(f"unknown challenge status {latest!r}")
    return PrFacts(
        installation=installation,
        repo_is_member=bool(row["member"]),
        # The repository's config file wins over the owner API's settings (docs/configuration.md).
        settings=effective(repo_settings.from_row(settings_row) if settings_row is not None else None,
                           row["file_config"])[0],
        author_verified=bool(row["author_verified"]),
        pending_challenge_id=row["pending_challenge_id"],
        latest_challenge_status=latest,
        pending_head_sha=row["pending_head_sha"],
    )
