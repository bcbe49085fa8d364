"""`/prgate <command>` decisions. Pure, like `decide`.

- `recheck` (anyone): the PR is evaluated again exactly as on `opened`, so a
  verified or newly whitelisted author is let through and a PR prgate missed is gated.
- `exempt` (write, maintain or admin on the repository): the PR is exempted for good.
- anything else, or `exempt` from someone without write access: a short reply,
  once per comment (the reply is found again by the comment's id).
"""

from __future__ import annotations

from backend_api.challenges import messages
from backend_api.challenges.decide import (
    WRITE_PERMISSIONS,
    Comment,
    Plan,
    PrContext,
    Status,
    decide,
    installation_refusal,
)
from shared_contracts.actions import is_commit_sha
from shared_contracts.events import CommandEvent, Decision, IngestStatus, PullRequestEvent


def as_recheck(cmd: CommandEvent) -> PullRequestEvent:
    """The command seen as a pull_request event with action `recheck` (not a wire action)."""
    return PullRequestEvent.model_construct(
        delivery_id=cmd.delivery_id, event="pull_request", action="recheck",  # type: ignore[arg-type]
        installation_id=cmd.installation_id, repository=cmd.repository, pull_request=cmd.pull_request,
        sender=cmd.sender,
    )


def decide_command(cmd: CommandEvent, event: PullRequestEvent, ctx: PrContext) -> Plan:
    refusal = installation_refusal(ctx)
    if refusal is not None:
        return refusal
    if cmd.command == "recheck":
        return decide(event, ctx)
    author, sender = cmd.pull_request.author.login, cmd.sender.login
    if cmd.command != "exempt":
        return Plan(status=IngestStatus.ACCEPTED, reason=f"unknown command '{cmd.command}'", comments=[
            Comment(messages.reply_marker(cmd.comment_id),
                    messages.unknown_command_reply(cmd.comment_id, sender, cmd.command)),
        ])
    if cmd.sender_permission not in WRITE_PERMISSIONS:
        return Plan(status=IngestStatus.ACCEPTED, reason=f"{sender} may not exempt ({cmd.sender_permission})",
                    comments=[Comment(messages.reply_marker(cmd.comment_id),
                                      messages.command_refused_reply(cmd.comment_id, sender, "exempt"))])
    reason = f"exempted by {sender}"
    pending = ctx.pending_challenge_id is not None
    statuses = ([Status("success", messages.STATUS_EXEMPTED)]
                if is_commit_sha(cmd.pull_request.head_sha) else [])
    return Plan(
        status=IngestStatus.ACCEPTED, decision=Decision.EXEMPT, reason=reason,
        resolve_pending="EXEMPTED" if pending else None,
        record_exemption=None if pending else reason,
        comments=[Comment(messages.PR_COMMENT_MARKER, messages.exempted_comment(author, sender))],
        statuses=statuses,
    )
