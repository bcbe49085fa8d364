"""What differs between GitHub and the backend's tables, and which events would have prevented it.

Pure: the service (`backend_api.reconcile.service`) reads the tables, calls these functions and
applies what they return through the same code the webhooks use.

Everything changed here since the run started (`since`, the database's clock when the run began,
before the worker asked GitHub anything) is left alone: a webhook applied meanwhile is newer
information than the worker's listing, and the next run looks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from backend_api.challenges import messages
from backend_api.store.challenges import PendingChallenge
from backend_api.store.installations import InstallationDetail, Membership
from shared_contracts.events import InstallationInfo, Repository
from shared_contracts.owner import InstallationStatus
from shared_contracts.reconcile import InstallationSnapshot, OpenPullRequest, RepairKind

SyncEvent = tuple[Literal["installation", "installation_repositories"],
                  Literal["created", "deleted", "suspend", "unsuspend", "added", "removed"]]


@dataclass(frozen=True, slots=True)
class Step:
    """One repair: the installation event that was missed (None: metadata only), the repositories it
    carries, and what to record."""

    kind: RepairKind
    event: SyncEvent | None
    detail: str
    added: tuple[Repository, ...] = ()
    removed: tuple[Repository, ...] = ()
    repo: Repository | None = None  # the repository the repair is about, when it is about one


@dataclass(frozen=True, slots=True)
class InstallationPlan:
    steps: list[Step] = field(default_factory=list)


def _changed_metadata(known: InstallationDetail, github: InstallationInfo) -> list[str]:
    changes = []
    if known.account_login != github.account.login:
        changes.append(f"account {known.account_login} → {github.account.login}")
    if known.account_type != github.account.type:
        changes.append(f"account type {known.account_type} → {github.account.type}")
    if known.account_id != github.account.id:
        changes.append(f"account id {known.account_id} → {github.account.id}")
    if known.repository_selection != github.repository_selection:
        changes.append(f"repository selection {known.repository_selection} → {github.repository_selection}")
    return changes


def plan_installation(
    known: InstallationDetail | None,
    members: Sequence[Membership],
    snapshot: InstallationSnapshot,
    *,
    since: datetime,
) -> InstallationPlan:
    """The steps that bring the backend's view of one installation to GitHub's."""
    github = snapshot.installation
    suspended = github.suspended_at is not None
    repos = snapshot.repositories
    if known is None or known.status is InstallationStatus.DELETED:
        if known is not None and known.updated_at >= since:
            return InstallationPlan()  # deleted by a webhook during this run: GitHub's list is older
        what = "not known to prgate" if known is None else "deleted in prgate, still installed on GitHub"
        listed = messages.plural(len(repos), "repository") if repos is not None else "repositories unknown (suspended)"
        return InstallationPlan([Step(
            RepairKind.INSTALLATION_CREATED, ("installation", "created"),
            f"{what}: recorded as installed ({'suspended, ' if suspended else ''}{listed})",
            added=tuple(repos or ()),
        )])

    steps: list[Step] = []
    changes = _changed_metadata(known, github)
    if changes:
        steps.append(Step(RepairKind.INSTALLATION_UPDATED, None, "; ".join(changes)))
    if known.updated_at < since:
        if suspended and known.status is InstallationStatus.ACTIVE:
            steps.append(Step(RepairKind.INSTALLATION_SUSPENDED, ("installation", "suspend"),
                              "suspended on GitHub (missed installation.suspend)"))
        elif not suspended and known.status is InstallationStatus.SUSPENDED:
            steps.append(Step(RepairKind.INSTALLATION_UNSUSPENDED, ("installation", "unsuspend"),
                              "active on GitHub (missed installation.unsuspend)"))
    if repos is not None:
        steps += _membership_steps(members, repos, complete=snapshot.repositories_complete, since=since)
    return InstallationPlan(steps)


def _membership_steps(
    members: Sequence[Membership], repos: Sequence[Repository], *, complete: bool, since: datetime
) -> list[Step]:
    by_id = {m.repo_id: m for m in members}
    listed = {r.id: r for r in repos}
    steps: list[Step] = []
    for repo in sorted(listed.values(), key=lambda r: r.id):
        member = by_id.get(repo.id)
        if member is None or member.removed_at is not None:
            if member is not None and member.removed_at is not None and member.removed_at >= since:
                continue  # removed by a webhook during this run
            steps.append(Step(RepairKind.REPOSITORY_ADDED, ("installation_repositories", "added"),
                              "listed by GitHub (missed installation_repositories.added)",
                              added=(repo,), repo=repo))
        elif member.full_name != repo.full_name:
            steps.append(Step(RepairKind.REPOSITORY_RENAMED, ("installation_repositories", "added"),
                              f"renamed from {member.full_name}", added=(repo,), repo=repo))
    if complete:
        for member in members:
            if member.removed_at is None and member.repo_id not in listed and member.added_at < since:
                gone = Repository(id=member.repo_id, full_name=member.full_name, private=member.private)
                steps.append(Step(RepairKind.REPOSITORY_REMOVED, ("installation_repositories", "removed"),
                                  "no longer listed by GitHub (missed installation_repositories.removed)",
                                  removed=(gone,), repo=gone))
    return steps


def installations_to_delete(
    live: Sequence[InstallationDetail], listed: Sequence[int], *, scope: int | None, since: datetime
) -> list[InstallationDetail]:
    """Live installations GitHub no longer lists (within the run's scope), untouched since the run began."""
    present = set(listed)
    return [
        i for i in live
        if (scope is None or i.installation_id == scope) and i.installation_id not in present
        and i.updated_at < since
    ]


def _predates(pr: OpenPullRequest, installed_at: datetime | None) -> bool:
    return pr.created_at is not None and installed_at is not None and pr.created_at < installed_at


@dataclass(frozen=True, slots=True)
class PullRequestPlan:
    evaluate: list[OpenPullRequest]  # open, never decided: evaluate as `opened`
    cancel: list[PendingChallenge]  # pending, but the pull request is no longer open


def plan_pull_requests(
    open_prs: Sequence[OpenPullRequest],
    decided: set[int],
    pending: Sequence[PendingChallenge],
    *,
    complete: bool,
    since: datetime,
    installed_at: datetime | None = None,
) -> PullRequestPlan:
    """Open pull requests prgate never decided about, and (from a complete list only) pending
    challenges whose pull request is no longer open. A challenge created since the run began may be
    for a pull request opened after GitHub was asked: it is kept. A pull request opened before the
    installation existed (`installed_at`) had no event to miss: installing the App does not gate
    what was already open."""
    by_number: dict[int, OpenPullRequest] = {}
    for pr in open_prs:
        if pr.state == "open":
            by_number.setdefault(pr.number, pr)
    evaluate = [
        by_number[n] for n in sorted(by_number)
        if n not in decided and not _predates(by_number[n], installed_at)
    ]
    cancel = [c for c in pending if complete and c.pr_number not in by_number and c.created_at < since]
    return PullRequestPlan(evaluate=evaluate, cancel=cancel)
