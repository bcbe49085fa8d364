"""Event ingest models (docs/contract.md "Event ingest")."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from shared_contracts.common import ErrorBody, WireModel

DeliveryId = str

# The SHA-256 (hex) of the raw webhook body the receiver verified (docs/security.md, "A captured `closed` body
# replayed under a fresh delivery id"): the backend
# dedups on it too, since GitHub's signature does not cover X-GitHub-Delivery. Optional: older
# receivers and reconciliation send none.
BodySha256 = Annotated[str | None, Field(default=None, pattern=r"^[0-9a-f]{64}$")]


class IngestStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    IGNORED = "IGNORED"
    # Its installation is not known yet: kept and decided once the installation event arrives.
    PARKED = "PARKED"
    # Its installation is not known yet and too many events already wait: recorded, never acted on.
    DROPPED = "DROPPED"


class Decision(StrEnum):
    GATE = "GATE"
    EXEMPT = "EXEMPT"
    VERIFIED_NOOP = "VERIFIED_NOOP"
    DRAFT_DEFERRED = "DRAFT_DEFERRED"
    CANCELLED = "CANCELLED"


CollaboratorPermission = Literal["admin", "maintain", "write", "triage", "read", "none"]


class Account(WireModel):
    id: int
    login: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=64)


class Repository(WireModel):
    id: int
    full_name: str = Field(min_length=3, max_length=512, pattern=r"^[^/\s]+/[^/\s]+$")
    private: bool = False


class PullRequest(WireModel):
    id: int
    number: int = Field(ge=1, le=2**31 - 1)  # pr_number columns are PostgreSQL INTEGERs
    title: str = Field(default="", max_length=4096)
    state: Literal["open", "closed"]
    draft: bool = False
    merged: bool = False
    head_sha: str = Field(default="", max_length=64)
    html_url: str = Field(default="", max_length=2048)
    author: Account
    author_association: str = Field(default="NONE", max_length=64)
    # The author's permission on the repository when the provider does not say how the author relates
    # to it (Bitbucket: asked through its API, docs/bitbucket.md). None: not asked (GitHub's
    # `author_association` says it).
    author_permission: CollaboratorPermission | None = None


PullRequestAction = Literal[
    "opened",
    "reopened",
    "closed",
    "ready_for_review",
    "converted_to_draft",
    "synchronize",
    "edited",
    "assigned",
    "unassigned",
    "labeled",
    "unlabeled",
    "locked",
    "unlocked",
    "review_requested",
    "review_request_removed",
    "auto_merge_enabled",
    "auto_merge_disabled",
    "enqueued",
    "dequeued",
    "milestoned",
    "demilestoned",
]


class PullRequestEvent(WireModel):
    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["pull_request"] = "pull_request"
    action: PullRequestAction
    installation_id: int
    repository: Repository
    pull_request: PullRequest
    sender: Account
    # Set by the receiver, from GitHub, for a `reopened` by someone other than the author: only a
    # maintainer's reopen after the deadline exempts the PR (docs/security.md, "Reopen after timeout, session
    # revocation, wrong-answer rate limit"). None: not asked.
    sender_permission: CollaboratorPermission | None = None


class InstallationInfo(WireModel):
    id: int
    account: Account
    repository_selection: Literal["selected", "all"] = "selected"
    suspended_at: str | None = None


class InstallationSyncEvent(WireModel):
    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["installation", "installation_repositories"]
    action: Literal[
        "created", "deleted", "suspend", "unsuspend", "added", "removed", "new_permissions_accepted"
    ]
    installation: InstallationInfo
    repositories_added: list[Repository] = Field(default_factory=list, max_length=10_000)
    repositories_removed: list[Repository] = Field(default_factory=list, max_length=10_000)


class RepositoryRenamedEvent(WireModel):
    """`repository.renamed` (an extension of §3, see docs/contract.md): the repository keeps its id and
    gets a new name. prgate acts by id only; this keeps the stored name (logs, links, pages) current."""

    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["repository"] = "repository"
    action: Literal["renamed"] = "renamed"
    installation_id: int
    repository: Repository


class IngestResponse(WireModel):
    status: IngestStatus
    delivery_id: DeliveryId
    decision: Decision | None = None
    challenge_id: int | None = None
    enqueued_action_ids: list[int] = Field(default_factory=list)
    reason: str | None = None


# pull_request events per group call: as many as one backend ingest batch can hold at its largest.
PULL_REQUEST_EVENTS_MAX = 100


class PullRequestEventBatch(WireModel):
    """Several `pull_request` deliveries in one signed call (an extension of §3, see docs/contract.md).

    Each is ingested exactly as the single-event endpoint would, and answered on its own, in order.
    """

    events: list[PullRequestEvent] = Field(min_length=1, max_length=PULL_REQUEST_EVENTS_MAX)


class IngestBatchItem(WireModel):
    """One delivery's answer: its IngestResponse, or the error that kept it from being written
    (nothing of it was: the sender retries it, as after a 5xx of the single call)."""

    response: IngestResponse | None = None
    error: ErrorBody | None = None


class IngestBatchResponse(WireModel):
    """One item per event of the request, in the request's order."""

    results: list[IngestBatchItem]



class CommandEvent(WireModel):
    """A `/prgate <command>` comment on a pull request (an extension of §3, see docs/contract.md).

    The receiver enriches it with what the backend cannot ask GitHub itself: the
    pull request's current state and the commenter's permission on the repository.
    """

    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["issue_comment"] = "issue_comment"
    installation_id: int
    repository: Repository
    pull_request: PullRequest
    comment_id: int
    command: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")
    sender: Account
    sender_permission: CollaboratorPermission


class KnownDeliveriesRequest(WireModel):
    """Which of these GitHub delivery ids (X-GitHub-Delivery) has the backend recorded? (redelivery job)"""

    delivery_ids: list[Annotated[DeliveryId, Field(min_length=1, max_length=128)]] = Field(max_length=100)


class KnownDeliveriesResponse(WireModel):
    """The subset of the asked delivery ids with a `webhook_deliveries` row (any event name)."""

    known: list[DeliveryId]


class ConfigPushEvent(WireModel):
    """A `push` to a repository's default branch that touched `.github/prgate.yml` (an extension of
    §3, see docs/configuration.md): the receiver forwards only those; the backend reads the file
    again (and, for the organization's `.github` repository, every repository inheriting from it)."""

    delivery_id: DeliveryId = Field(min_length=1, max_length=128)
    body_sha256: BodySha256 = None
    event: Literal["push"] = "push"
    installation_id: int
    repository: Repository
    # The pushed commit (`after`): the `prgate/config` status goes on it.
    head_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    sender: Account | None = None
