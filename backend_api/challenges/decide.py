"""The pull-request decision: a pure function from an event and what the store knows to a plan.

No I/O here; `backend_api.events.pull_request` loads the context, calls
`decide`, and writes the plan in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from backend_api.challenges import messages
from shared_contracts.events import Decision, IngestStatus, PullRequestEvent
from shared_contracts.owner import InstallationStatus, RepoSettings

# Actions that (re-)evaluate whether the PR must be gated.
EVALUATING_ACTIONS = frozenset({"opened", "reopened", "ready_for_review"})


@dataclass(frozen=True, slots=True)
class PrContext:
    installation_status: InstallationStatus | None
    repo_is_member: bool
    settings: RepoSettings
    author_verified: bool
    pending_challenge_id: int | None
    now: datetime
    verify_url: str


@dataclass(frozen=True, slots=True)
class Comment:
    marker: str
    body: str


@dataclass(frozen=True, slots=True)
class Plan:
    status: IngestStatus
    decision: Decision | None = None
    reason: str | None = None
    create_challenge_deadline: datetime | None = None
    cancel_pending: bool = False
    comments: list[Comment] = field(default_factory=list)


def _ignored(reason: str) -> Plan:
    return Plan(status=IngestStatus.IGNORED, reason=reason)


def decide(event: PullRequestEvent, ctx: PrContext) -> Plan:
    if ctx.installation_status is None:
        return _ignored("unknown installation")
    if ctx.installation_status is not InstallationStatus.ACTIVE:
        return _ignored(f"installation is {ctx.installation_status.value.lower()}")
    if not ctx.repo_is_member:
        return _ignored("repository is not part of the installation")

    pr = event.pull_request
    if event.action == "closed":
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
    if settings.exempt_bots and (author.type == "Bot" or author.login.endswith("[bot]")):
        return _ignored("bot author")
    whitelist = {login.lower() for login in settings.whitelist_logins}
    if author.login.lower() in whitelist or pr.author_association in settings.exempt_associations:
        why = "whitelisted login" if author.login.lower() in whitelist else (
            f"author association {pr.author_association}"
        )
        comments = (
            [Comment(messages.PR_COMMENT_MARKER, messages.exempt_comment(author.login))]
            if settings.exempt_comment and event.action == "opened"
            else []
        )
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.EXEMPT, reason=why, comments=comments)
    if ctx.author_verified:
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.VERIFIED_NOOP,
                    reason="author already verified for this installation")
    if pr.draft and not settings.gate_drafts:
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.DRAFT_DEFERRED,
                    reason="drafts are gated when marked ready for review")
    if ctx.pending_challenge_id is not None:
        return Plan(status=IngestStatus.ACCEPTED, decision=Decision.GATE,
                    reason="challenge already pending")
    deadline = ctx.now + timedelta(seconds=settings.deadline_seconds)
    body = messages.gate_comment(author.login, ctx.verify_url, deadline, settings.warn_only)
    return Plan(
        status=IngestStatus.ACCEPTED,
        decision=Decision.GATE,
        reason="unverified contributor",
        create_challenge_deadline=deadline,
        comments=[Comment(messages.PR_COMMENT_MARKER, body)],
    )
