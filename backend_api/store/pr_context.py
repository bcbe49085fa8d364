"""What a decision about one pull request needs to know, read in one round trip.

It reads across aggregates (installation, membership, settings, contributors, challenges) on
purpose: the ingest path is round-trip bound (docs/benchmarks.md, ingest profile), and these six
facts were six statements. Call it after `challenges.lock_pull_request`, in the same transaction,
so that the facts about the PR's challenges cannot change before the decision is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from backend_api.challenges.decide import ChallengeStatus
from backend_api.store import repo_settings
from backend_api.store.db import Conn
from backend_api.store.installations import InstallationRow
from shared_contracts.owner import InstallationStatus, RepoSettings

_STATUSES: frozenset[str] = frozenset(get_args(ChallengeStatus))

_FACTS = f"""
SELECT i.installation_id, i.account_login, i.status, i.repository_selection,
       EXISTS (SELECT 1 FROM github_installation_repositories r
               WHERE r.installation_id = $1 AND r.repo_id = $2 AND r.removed_at IS NULL) AS member,
       s.repo_id IS NOT NULL AS has_settings,
       {", ".join(f"s.{c}" for c in repo_settings.COLUMNS)},
       EXISTS (SELECT 1 FROM contributors c
               WHERE c.installation_id = $1 AND c.github_user_id = $4) AS author_verified,
       (SELECT challenge_id FROM challenges
        WHERE repo_id = $2 AND pr_number = $3 AND status = 'PENDING'
        ORDER BY challenge_id DESC LIMIT 1) AS pending_challenge_id,
       (SELECT status FROM challenges
        WHERE repo_id = $2 AND pr_number = $3 ORDER BY challenge_id DESC LIMIT 1) AS latest_status
FROM (SELECT 1) AS one
LEFT JOIN github_installations i ON i.installation_id = $1
LEFT JOIN repo_settings s ON s.repo_id = $2
"""


@dataclass(frozen=True, slots=True)
class PrFacts:
    installation: InstallationRow | None
    repo_is_member: bool
    settings: RepoSettings
    author_verified: bool
    pending_challenge_id: int | None
    latest_challenge_status: ChallengeStatus | None


async def load(conn: Conn, installation_id: int, repo_id: int, pr_number: int, author_id: int) -> PrFacts:
    row = await conn.fetchrow(_FACTS, installation_id, repo_id, pr_number, author_id)
    assert row is not None  # one row always: the LEFT JOINs hang off a constant
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
        settings=repo_settings.from_row(settings_row),
        author_verified=bool(row["author_verified"]),
        pending_challenge_id=row["pending_challenge_id"],
        latest_challenge_status=latest,
    )
