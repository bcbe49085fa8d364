"""The pull-request decision: a pure function from an event and what the store knows to a plan.

No I/O here; `backend_api.gate.pull_request` loads the context, calls
`decide`, and writes the plan in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from backend_api.challenges import messages
from shared_contracts.actions import StatusState, is_commit_sha
from shared_contracts.events import Decision, IngestStatus, PullRequestEvent
from shared_contracts.owner import InstallationStatus, RepoSettings

# Actions that (re-)evaluate whether the PR must be gated. "recheck" is the `/prgate recheck` command.
EVALUATING_ACTIONS = frozenset({"opened", "reopened", "ready_for_review", "synchronize", "recheck"})

ChallengeStatus = Literal["PENDING", "VERIFIED", "TIMED_OUT", "CANCELLED", "EXEMPTED"]


@dataclass(frozen=True, slots=True)
class PrContext:
    installation_status: InstallationStatus | None
    repo_is_member: bool
    settings: RepoSettings
    author_verified: bool
    pending_challenge_id: int | None
    now: datetime
    verify_url: str
    # Status of the PR's most recent challenge, whatever it is (None: prgate never gated it).
    latest_challenge_status: ChallengeStatus | None = None
    # The head commit the pending challenge's status is on (None: no pending challenge).
    pending_head_sha: str | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    marker: str
    body: str


@dataclass(frozen=True, slots=True)
class Status:
    state: StatusState
    description: str


@dataclass(frozen=True, slots=True)
class Plan:
    status: IngestStatus
    decision: Decision | None = None
    reason: str | None = None
    create_challenge_deadline: datetime | None = None
    cancel_pending: bool = False
    # Resolve the pending challenge as this status (the PR no longer needs gating).
    resolve_pending: ChallengeStatus | None = None
    # Record a PR-level exemption (a maintainer's decision that later events must respect).
    record_exemption: str | None = None
    # Point the pending challenge at the PR's new head commit.
    move_head: bool = False
    comments: list[Comment] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)


def _ignored(reason: str) -> Plan:
    return Plan(status=IngestStatus.IGNORED, reason=reason)


def _status(event: PullRequestEvent, state: StatusState, description: str) -> list[Status]:
    # A status needs the head commit; payloads without one (rare) simply get none.
    return [Status(state, description)] if is_commit_sha(event.pull_request.head_sha) else []


def installation_refusal(ctx: PrContext) -> Plan | None:
    """Why prgate must not act on this repository at all, if it must not."""
    if ctx.installation_status is None:
        return _ignored("unknown installation")
    if ctx.installation_status is not InstallationStatus.ACTIVE:
        return _ignored(f"installation is {ctx.installation_status.value.lower()}")
    if not ctx.repo_is_member:
        return _ignored("repository is not part of the installation")
    return None


# GitHub's `permission` field folds maintain into write and triage into read.
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


def may_overrule_the_deadline(event: PullRequestEvent) -> bool:
    """A reopen exempts a timed-out PR for good only when a human with write access did it, as GitHub
    told the receiver; triage users, bots, and a reopen nobody asked GitHub about are gated again."""
    sender = event.sender
    if sender.type == "Bot" or sender.login.endswith("[bot]"):
        return False
    return event.sender_permission in WRITE_PERMISSIONS


def decide(event: PullRequestEvent, ctx: PrContext) -> Plan:
    refusal = installation_refusal(ctx)
    if refusal is not None:
        return refusal

    pr = event.pull_request
    if event.action == "closed":
        if pr.state != "closed":
            # The receiver asked GitHub before forwarding (docs/receiver.md, "Confirmed before acting"):
            # a replayed or stale `closed` for a PR that is open now must not cancel its challenge.
            return _ignored("closed, but GitHub says the pull request is open")
        if ctx.pending_challenge_id is None:
            return _ignored("closed without a pending challenge")
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.CANCELLED, cancel_pending=True,
                    reason="pull request closed")
    if event.action not in EVALUATING_ACTIONS:
        return _ignored(f"action '{event.action}' does not change the gate")
    if pr.state != "open":
        return _ignored("pull request is not open")

    settings = ctx.settings
    author = pr.author
    pending = ctx.pending_challenge_id is not None
    if settings.exempt_bots and (author.type == "Bot" or author.login.endswith("[bot]")):
        return _ignored("bot author")

    # By user id, never by login: a whitelisted login can be renamed and registered by someone else.
    whitelisted = author.id in settings.whitelist_user_ids
    can_write = pr.author_permission in WRITE_PERMISSIONS
    if whitelisted or can_write or pr.author_association in settings.exempt_associations:
        why = "whitelisted login" if whitelisted else (
            f"author has {pr.author_permission} permission" if can_write
            else f"author association {pr.author_association}"
        )
        announce = settings.exempt_comment and (event.action == "opened" or pending)
        return Plan(
            status=IngestStatus.ACCEPTED, decision=Decision.EXEMPT, reason=why,
            resolve_pending="EXEMPTED" if pending else None,
            comments=[Comment(messages.PR_COMMENT_MARKER, messages.exempt_comment(author.login))] if announce else [],
            statuses=_status(event, "success", messages.STATUS_EXEMPT),
        )
    if ctx.author_verified:
        return Plan(
            status=IngestStatus.ACCEPTED, decision=Decision.VERIFIED_NOOP,
            reason="author already verified for this installation",
            resolve_pending="VERIFIED" if pending else None,
            comments=[Comment(messages.PR_COMMENT_MARKER, messages.verified_comment(author.login))] if pending else [],
            statuses=_status(event, "success", messages.STATUS_VERIFIED),
        )
    if not pending and ctx.latest_challenge_status == "EXEMPTED":
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.EXEMPT, reason="exempted by a maintainer",
                    statuses=_status(event, "success", messages.STATUS_EXEMPTED))
    if (not pending and ctx.latest_challenge_status == "TIMED_OUT" and event.action == "reopened"
            and event.sender.id != author.id and may_overrule_the_deadline(event)):
        # A maintainer reopened what prgate closed: that is their decision, and it sticks.
        return Plan(
            status=IngestStatus.ACCEPTED, decision=Decision.EXEMPT,
            reason=f"reopened by {event.sender.login} after the deadline",
            record_exemption=f"reopened by {event.sender.login} after the deadline",
            comments=[Comment(messages.PR_COMMENT_MARKER,
                              messages.reopened_after_timeout_comment(author.login, event.sender.login))],
            statuses=_status(event, "success", messages.STATUS_REOPENED),
        )
    if pr.draft and not settings.gate_drafts:
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.DRAFT_DEFERRED,
                    reason="drafts are gated when marked ready for review")
    if pending and event.action == "synchronize" and ctx.pending_head_sha == pr.head_sha:
        # Bitbucket's `pullrequest:updated` also fires for a title or reviewer change: the gate's status
        # is already on this head.
        return _ignored("the pull request's head did not change")
    if pending:
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.GATE, reason="challenge already pending",
                    move_head=True, statuses=_status(event, "pending", messages.STATUS_PENDING))
    deadline = ctx.now + timedelta(seconds=settings.deadline_seconds)
    body = messages.gate_comment(author.login, ctx.verify_url, deadline, settings.warn_only)
    return Plan(
        status=IngestStatus.ACCEPTED,
        decision=Decision.GATE,
        reason="unverified contributor",
        create_challenge_deadline=deadline,
        comments=[Comment(messages.PR_COMMENT_MARKER, body)],
        statuses=_status(event, "pending", messages.STATUS_PENDING),
    )
