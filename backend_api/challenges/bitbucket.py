"""Bitbucket pull-request events as the facts the one decision reads (docs/bitbucket.md, "The gate").

Pure: the backend has already mapped Bitbucket's UUIDs to its own ids (`Identities`) and asked
Bitbucket for the author's permission; this turns the event into the `PullRequestEvent` that
`decide` takes for both providers, so there is no second copy of the decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_contracts.bitbucket import BitbucketAccount, BitbucketPullRequest, BitbucketPullRequestEvent
from shared_contracts.events import (
    Account,
    CollaboratorPermission,
    PullRequest,
    PullRequestAction,
    PullRequestEvent,
    Repository,
)

# What each event key means to the gate. `updated` covers a new source commit, a draft marked ready
# and a title edit alike; `decide` ignores one whose head is the pending challenge's.
ACTIONS: dict[str, PullRequestAction] = {
    "pullrequest:created": "opened",
    "pullrequest:updated": "synchronize",
    "pullrequest:fulfilled": "closed",
    "pullrequest:rejected": "closed",
}


@dataclass(frozen=True, slots=True)
class Identities:
    """The backend's ids for the event's workspace, repository, author and actor."""

    tenant_id: int
    repo_id: int
    author_id: int
    actor_id: int


def account(who: BitbucketAccount, user_id: int) -> Account:
    # `app_user` is what Bitbucket calls bots, apps and access tokens: the decision's "Bot".
    kind = "Bot" if who.type == "app_user" else "User"
    return Account(id=user_id, login=who.nickname or who.display_name or who.uuid, type=kind)


def as_pull_request(
    pr: BitbucketPullRequest, ids: Identities, author_permission: CollaboratorPermission | None
) -> PullRequest:
    return PullRequest(
        id=pr.id, number=pr.id, title=pr.title,
        state="open" if pr.state == "OPEN" else "closed",
        draft=pr.draft, merged=pr.state == "MERGED",
        head_sha=pr.source_commit, html_url=pr.html_url,
        author=account(pr.author, ids.author_id),
        author_permission=author_permission,
    )


def as_pull_request_event(
    event: BitbucketPullRequestEvent, ids: Identities, author_permission: CollaboratorPermission | None
) -> PullRequestEvent:
    return PullRequestEvent(
        delivery_id=event.delivery_id,
        body_sha256=event.body_sha256,
        action=ACTIONS[event.event_key],
        installation_id=ids.tenant_id,
        repository=Repository(id=ids.repo_id, full_name=event.repository.full_name,
                              private=event.repository.private),
        pull_request=as_pull_request(event.pull_request, ids, author_permission),
        sender=account(event.actor, ids.actor_id),
    )


def needs_permission(event: BitbucketPullRequestEvent) -> bool:
    """Whether the decision may read the author's permission: only events that evaluate an open PR."""
    return ACTIONS[event.event_key] != "closed" and event.pull_request.state == "OPEN"
