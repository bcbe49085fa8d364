"""Outbox claim/result models (ARCHITECTURE.md §4)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from shared_contracts.common import WireModel


class Provider(StrEnum):
    GITHUB = "github"
    BITBUCKET = "bitbucket"


class ActionType(StrEnum):
    UPSERT_PR_COMMENT = "UPSERT_PR_COMMENT"
    CLOSE_PR_WITH_COMMENT = "CLOSE_PR_WITH_COMMENT"


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
    repo_full_name: str
    github_pr_number: int
    payload: CommentPayload


class ClaimResponse(WireModel):
    actions: list[ClaimedAction]


class ResultRequest(WireModel):
    worker_id: str = Field(min_length=1, max_length=200)
    attempt: int = Field(ge=1)
    outcome: Outcome
    error: str | None = Field(default=None, max_length=8192)
    retry_after_seconds: float | None = Field(default=None, ge=0, le=86_400)


class ResultResponse(WireModel):
    action_id: int
    status: ActionStatus
    next_attempt_at: datetime | None = None
