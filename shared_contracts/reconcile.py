"""Reconciliation with GitHub (docs/reconcile.md): the worker sends what GitHub says, the backend repairs.

A run is: start (`ReconcileRunStart` → `ReconcileRunStarted`), one `InstallationSnapshot` per
installation and one `PullRequestSnapshot` per repository looked at (each answered with the
repairs it caused), then finish (`ReconcileRunFinish` → `ReconcileRunReport`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared_contracts.common import WireModel
from shared_contracts.events import InstallationInfo, PullRequest, Repository

ReconcileTrigger = Literal["schedule", "cli"]

MAX_REPOSITORIES = 10_000  # as in InstallationSyncEvent
MAX_PULL_REQUESTS = 2_000  # 20 pages of 100; about 400 KB without titles, under the 1 MiB body limit
MAX_ERRORS = 1_000


class RepairKind(StrEnum):
    INSTALLATION_CREATED = "installation_created"  # unknown (or deleted) here, listed by GitHub
    INSTALLATION_UPDATED = "installation_updated"  # account login/type or repository selection changed
    INSTALLATION_SUSPENDED = "installation_suspended"
    INSTALLATION_UNSUSPENDED = "installation_unsuspended"
    INSTALLATION_DELETED = "installation_deleted"  # live here, no longer listed by GitHub
    REPOSITORY_ADDED = "repository_added"
    REPOSITORY_REMOVED = "repository_removed"
    REPOSITORY_RENAMED = "repository_renamed"
    PULL_REQUEST_EVALUATED = "pull_request_evaluated"  # open, never decided: evaluated as `opened`
    CHALLENGE_CANCELLED = "challenge_cancelled"  # pending, but its pull request is no longer open


class Repair(WireModel):
    kind: RepairKind
    installation_id: int
    repo_id: int | None = None
    repo_full_name: str | None = None
    pr_number: int | None = None
    detail: str = Field(default="", max_length=2000)


class ReconcileError(WireModel):
    """Something a run could not do: a GitHub error, or a part deferred to keep the rate-limit reserve."""

    installation_id: int | None = None
    repo_full_name: str | None = Field(default=None, max_length=512)
    message: str = Field(min_length=1, max_length=2000)


class ReconcileStats(WireModel):
    installations: int = Field(default=0, ge=0)
    repositories: int = Field(default=0, ge=0)
    pull_requests: int = Field(default=0, ge=0)


class ReconcileRunStart(WireModel):
    trigger: ReconcileTrigger
    worker_id: str = Field(min_length=1, max_length=200)
    # None: every installation the App has; else only this one.
    installation_id: int | None = None


class ReconcileRunStarted(WireModel):
    run_id: int


class InstallationSnapshot(WireModel):
    """One installation as GitHub lists it (`GET /app/installations` item + `GET /installation/repositories`)."""

    run_id: int
    installation: InstallationInfo  # suspended_at set: suspended
    # None: not known (a suspended installation gets no token): membership is left alone.
    repositories: list[Repository] | None = Field(default=None, max_length=MAX_REPOSITORIES)
    # False: the listing stopped early (rate-limit reserve, error): repositories are added, never removed.
    repositories_complete: bool = True


class OpenPullRequest(PullRequest):
    created_at: datetime | None = None


class PullRequestSnapshot(WireModel):
    """A repository's open pull requests (`GET /repos/{o}/{r}/pulls?state=open`)."""

    run_id: int
    installation_id: int
    repository: Repository
    pull_requests: list[OpenPullRequest] = Field(max_length=MAX_PULL_REQUESTS)
    # False: more pages were left unread: unseen ones are evaluated, no challenge is cancelled.
    complete: bool
    # When GitHub says the installation was created: a pull request opened before it had no
    # `opened` event to miss, and is not evaluated.
    installation_created_at: datetime | None = None


class RepairsResponse(WireModel):
    repairs: list[Repair]


class ReconcileRunFinish(WireModel):
    # The installation ids GitHub listed within the run's scope; None when that listing is incomplete
    # (then no installation is deleted).
    listed_installation_ids: list[int] | None = Field(default=None, max_length=MAX_REPOSITORIES)
    errors: list[ReconcileError] = Field(default_factory=list, max_length=MAX_ERRORS)
    stats: ReconcileStats = Field(default_factory=ReconcileStats)


class ReconcileRunReport(WireModel):
    run_id: int
    trigger: ReconcileTrigger
    installation_id: int | None
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    repairs: list[Repair]
    errors: list[ReconcileError]
    stats: ReconcileStats
