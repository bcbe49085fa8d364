"""Bitbucket pull-request events as the facts the one decision reads (docs/bitbucket.md, "The gate").

Pure: the backend has already mapped Bitbucket's UUIDs to its own ids (`Identities`) and asked
Bitbucket for the author's permission; this turns the event into the `PullRequestEvent` that
`decide` takes for both providers, so there is no second copy of the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
class NameMatch:
    """Whitelisted Bitbucket names matched to the accounts prgate knows (see :func:`match_names`)."""

    ids: dict[str, int]  # lower-cased name -> user id, for each name that names exactly one account
    unknown: tuple[str, ...]  # as given
    ambiguous: tuple[str, ...]  # a nickname two known accounts share


def match_names(names: Sequence[str], known: Mapping[str, Sequence[int]]) -> NameMatch:
    """The one rule for ``whitelist_logins`` on Bitbucket, the config file's and the owner API's:
    a name is a nickname (case-insensitive) or an Atlassian ``account_id``, ``known`` maps each
    lower-cased name to the accounts holding it (``store.bitbucket.accounts_named``). Bitbucket's API
    has no lookup by nickname, so a name is only ever matched against accounts prgate has seen, and
    a name that fits two of them matches none (the caller asks for the ``account_id``)."""
    ids: dict[str, int] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    for name in dict.fromkeys(names):
        found = list(dict.fromkeys(known.get(name.lower(), ())))
        if not found:
            unknown.append(name)
        elif len(found) > 1:
            ambiguous.append(name)
        else:
            ids[name.lower()] = found[0]
    return NameMatch(ids, tuple(unknown), tuple(ambiguous))


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
