"""Outbox claim/result models (docs/contract.md "Outbox")."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AliasChoices, Field, computed_field, model_validator

from shared_contracts.common import WireModel


class Provider(StrEnum):
    GITHUB = "github"
    BITBUCKET = "bitbucket"


class ActionType(StrEnum):
    UPSERT_PR_COMMENT = "UPSERT_PR_COMMENT"
    CLOSE_PR_WITH_COMMENT = "CLOSE_PR_WITH_COMMENT"
    # Extensions of the §4 contract (docs/contract.md): the commit status that lets branch
    # protection require prgate, and reopening a PR closed by timeout once its author verifies.
    SET_COMMIT_STATUS = "SET_COMMIT_STATUS"
    REOPEN_PR_WITH_COMMENT = "REOPEN_PR_WITH_COMMENT"


class ActionStatus(StrEnum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    RETRYABLE_FAILURE = "RETRYABLE_FAILURE"
    FAILED = "FAILED"


class CommentPayload(WireModel):
    """What an action needs to write: the hidden marker that finds our comment, and its body."""

    marker: str = Field(min_length=1, max_length=256)
    body: str = Field(min_length=1, max_length=65_000)


StatusState = Literal["pending", "success", "failure", "error"]

# A commit a status can go on: GitHub's payloads carry 40 hex digits, Bitbucket's webhooks abbreviated
# hashes (12), which its API accepts wherever a commit goes (docs/bitbucket.md).
COMMIT_SHA_PATTERN = r"^[0-9a-f]{7,40}$"
_COMMIT_SHA = re.compile(COMMIT_SHA_PATTERN)


def is_commit_sha(value: str) -> bool:
    """Whether a status can go on ``value`` (what StatusPayload would accept)."""
    return _COMMIT_SHA.fullmatch(value) is not None  # `$` alone would let a trailing newline through


class StatusPayload(WireModel):
    """A commit status on the PR head: context `prgate`, so branch protection can require it."""

    sha: str = Field(pattern=COMMIT_SHA_PATTERN)
    state: StatusState
    context: str = Field(default="prgate", min_length=1, max_length=255)
    description: str = Field(default="", max_length=140)
    target_url: str | None = Field(default=None, max_length=2048)


ActionPayload = CommentPayload | StatusPayload

PAYLOAD_TYPES: dict[ActionType, type[CommentPayload] | type[StatusPayload]] = {
    ActionType.UPSERT_PR_COMMENT: CommentPayload,
    ActionType.CLOSE_PR_WITH_COMMENT: CommentPayload,
    ActionType.REOPEN_PR_WITH_COMMENT: CommentPayload,
    ActionType.SET_COMMIT_STATUS: StatusPayload,
}


class ClaimRequest(WireModel):
    worker_id: str = Field(min_length=1, max_length=200)
    max_actions: int = Field(default=1, ge=1, le=100)
    lease_seconds: int = Field(default=60, ge=5, le=3600)
    # Long-poll: when nothing is claimable, hold the request up to this long and
    # answer as soon as an action is enqueued (an extension of the §4 contract).
    wait_seconds: float = Field(default=0.0, ge=0.0, le=30.0)


class ClaimedAction(WireModel):
    action_id: int
    attempt: int
    lease_expires_at: datetime
    provider: Provider
    action_type: ActionType
    installation_id: int
    # The repository is acted on by id (GitHub's /repositories/{id} routes): a name can be renamed
    # and then taken by another repository. The name is for logs and display only.
    repo_id: int = Field(ge=1)
    repo_full_name: str
    # Provider-neutral (docs/contract.md, "`pr_number`, provider-neutral"). An older backend sends `github_pr_number`,
    # accepted as well.
    pr_number: int = Field(validation_alias=AliasChoices("pr_number", "github_pr_number"))
    payload: ActionPayload
    # The id of the comment this App wrote on the PR under the payload's marker, when a worker
    # reported one (docs/security.md, "Gate bypass through a foreign comment"): edited directly instead of searched
    # for. Absent from an older backend; an older worker ignores it.
    comment_id: int | None = Field(default=None, ge=1)

    # Sent beside `pr_number` for one release, so an older worker (which requires it) keeps working;
    # also what the bot's code reads until it switches to `pr_number`. Drop both in the release after.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def github_pr_number(self) -> int:
        return self.pr_number

    @model_validator(mode="after")
    def _payload_matches_type(self) -> ClaimedAction:
        expected = PAYLOAD_TYPES[self.action_type]
        if not isinstance(self.payload, expected):
            raise ValueError(f"{self.action_type.value} needs a {expected.__name__}")
        return self


class ClaimResponse(WireModel):
    actions: list[ClaimedAction]


class ResultRequest(WireModel):
    worker_id: str = Field(min_length=1, max_length=200)
    attempt: int = Field(ge=1, le=2**31 - 1)  # bot_actions.attempt is a PostgreSQL INTEGER
    outcome: Outcome
    error: str | None = Field(default=None, max_length=8192)
    retry_after_seconds: float | None = Field(default=None, ge=0, le=86_400)
    # The PR comment this attempt created or edited (optional: older workers never send it).
    comment_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


class ResultResponse(WireModel):
    action_id: int
    status: ActionStatus
    next_attempt_at: datetime | None = None


RESULTS_MAX = 100  # results per batch call, as many as one claim can lease


class ActionResult(WireModel):
    """One attempt's outcome inside a batch: what ResultRequest says, plus which action."""

    action_id: int = Field(ge=1)
    attempt: int = Field(ge=1, le=2**31 - 1)  # bot_actions.attempt is a PostgreSQL INTEGER
    outcome: Outcome
    error: str | None = Field(default=None, max_length=8192)
    retry_after_seconds: float | None = Field(default=None, ge=0, le=86_400)
    comment_id: int | None = Field(default=None, ge=1, le=2**63 - 1)  # as in ResultRequest


class BatchResultRequest(WireModel):
    """Several results in one call and one transaction (an extension of the §4 contract).

    Each result is applied or refused on its own, exactly as the single-result call would;
    one commit for the lot is what makes a worker's results cheap (docs/contract.md).
    """

    worker_id: str = Field(min_length=1, max_length=200)
    results: list[ActionResult] = Field(min_length=1, max_length=RESULTS_MAX)

    @model_validator(mode="after")
    def _one_result_per_action(self) -> BatchResultRequest:
        ids = [r.action_id for r in self.results]
        if len(set(ids)) != len(ids):
            raise ValueError("each action_id may appear once per batch")
        return self


ResultRefusal = Literal["stale_lease", "unknown_action"]


class BatchResultItem(WireModel):
    """Either the action's new status, or why nothing changed for it."""

    action_id: int
    status: ActionStatus | None = None
    next_attempt_at: datetime | None = None
    refused: ResultRefusal | None = None


class BatchResultResponse(WireModel):
    results: list[BatchResultItem]


class LeaseRequest(WireModel):
    """Extend the lease of an attempt still running (an extension of the §4 contract): granted only
    while this worker holds that attempt's lease and it has not yet expired."""

    worker_id: str = Field(min_length=1, max_length=200)
    attempt: int = Field(ge=1, le=2**31 - 1)
    lease_seconds: int = Field(default=60, ge=5, le=3600)


class LeaseResponse(WireModel):
    action_id: int
    lease_expires_at: datetime
