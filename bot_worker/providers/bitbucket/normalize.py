"""Bitbucket Cloud webhook payload → `shared_contracts.bitbucket` models. Pure: no I/O.

Shape only (docs/bitbucket.md): Bitbucket's own identifiers travel as they are, braces stripped
from the UUIDs; the backend maps them to its ids and decides. Pydantic raises `ValidationError`
for a payload missing what the contract needs; the receiver answers it with 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from bot_worker.providers.commands import parse_command
from provider_clients.bitbucket.hook_secret import bare_uuid
from shared_contracts.bitbucket import (
    BitbucketAccount,
    BitbucketCommandEvent,
    BitbucketPullRequest,
    BitbucketPullRequestEvent,
    BitbucketPushEvent,
    BitbucketRepository,
)

BitbucketEvent = BitbucketPullRequestEvent | BitbucketCommandEvent | BitbucketPushEvent

PR_EVENT_KEYS: Final = frozenset(
    {"pullrequest:created", "pullrequest:updated", "pullrequest:fulfilled", "pullrequest:rejected"}
)
COMMENT_EVENT_KEY: Final = "pullrequest:comment_created"
PUSH_EVENT_KEY: Final = "repo:push"

# `reason` label values of `bitbucket_webhooks_ignored_total`.
UNKNOWN_EVENT: Final = "unknown_event"
NOT_A_COMMAND: Final = "not_a_command"
BOT_COMMENT: Final = "bot_comment"
NOT_MAIN_BRANCH: Final = "not_main_branch"


class NotForwardable(ValueError):
    """Valid JSON that cannot be routed (no workspace, no pull request object)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified delivery prgate does not act on; `reason` is the metric label."""

    reason: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _uuid(value: Any) -> Any:
    """The bare form of a UUID string; anything else is passed on for the model to refuse."""
    if isinstance(value, str):
        return bare_uuid(value) or value
    return value


def payload_workspace(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(bare workspace UUID, slug) the payload claims; None when it names none.

    `repository.workspace` is the workspace; payloads from before workspaces (and some events still)
    carry only `repository.owner`, which is the workspace of a repository (the same UUID).
    """
    repo = _dict(payload.get("repository"))
    for key, slug_key in (("workspace", "slug"), ("owner", "username")):
        holder = _dict(repo.get(key))
        raw = holder.get("uuid")
        if isinstance(raw, str):
            bare = bare_uuid(raw)
            if bare is None:
                raise NotForwardable(f"repository.{key}.uuid is not a UUID")
            slug = holder.get(slug_key)
            if not isinstance(slug, str) or not slug:
                full_name = repo.get("full_name")
                slug = full_name.split("/", 1)[0] if isinstance(full_name, str) else ""
            return bare, slug
    return None


def _workspace(payload: dict[str, Any]) -> tuple[str, str]:
    found = payload_workspace(payload)
    if found is None:
        raise NotForwardable("payload names no workspace (repository.workspace.uuid)")
    return found


def account(raw: Any) -> BitbucketAccount:
    user = _dict(raw)
    return BitbucketAccount.model_validate(
        {
            "account_id": user.get("account_id"),
            "uuid": _uuid(user.get("uuid")),
            "nickname": user.get("nickname") or "",
            "display_name": user.get("display_name") or "",
            "type": user.get("type") or "user",
        }
    )


def repository(raw: Any) -> BitbucketRepository:
    repo = _dict(raw)
    main = _dict(repo.get("mainbranch")).get("name")
    return BitbucketRepository.model_validate(
        {
            "uuid": _uuid(repo.get("uuid")),
            "full_name": repo.get("full_name"),
            "private": repo.get("is_private", True),
            "main_branch": main if isinstance(main, str) and main else None,
        }
    )


def pull_request(raw: Any) -> BitbucketPullRequest:
    pr = _dict(raw)
    if not pr:
        raise NotForwardable("payload has no pullrequest object")
    source, destination = _dict(pr.get("source")), _dict(pr.get("destination"))
    return BitbucketPullRequest.model_validate(
        {
            "id": pr.get("id"),
            "title": pr.get("title") or "",
            "state": pr.get("state"),
            "draft": bool(pr.get("draft")),
            "source_commit": _dict(source.get("commit")).get("hash") or "",
            "source_branch": _dict(source.get("branch")).get("name") or "",
            "destination_branch": _dict(destination.get("branch")).get("name") or "",
            "html_url": _dict(_dict(pr.get("links")).get("html")).get("href") or "",
            "author": account(pr.get("author")),
        }
    )


def pull_request_event(event_key: str, delivery_id: str, payload: dict[str, Any]) -> BitbucketPullRequestEvent:
    workspace_uuid, slug = _workspace(payload)
    return BitbucketPullRequestEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "event_key": event_key,
            "workspace_uuid": workspace_uuid,
            "workspace_slug": slug,
            "repository": repository(payload.get("repository")),
            "pull_request": pull_request(payload.get("pullrequest")),
            "actor": account(payload.get("actor")),
        }
    )


def command_event(delivery_id: str, payload: dict[str, Any]) -> BitbucketCommandEvent | Ignored:
    """A `/prgate <command>` comment; Ignored for any other comment, and for a bot's (prgate's own
    comments are written with the workspace's access token, an `app_user`: never a command to itself)."""
    comment = _dict(payload.get("comment"))
    command = parse_command(str(_dict(comment.get("content")).get("raw") or ""))
    if command is None:
        return Ignored(NOT_A_COMMAND)
    commenter = account(comment.get("user") or payload.get("actor"))
    if commenter.type == "app_user":
        return Ignored(BOT_COMMENT)
    workspace_uuid, slug = _workspace(payload)
    return BitbucketCommandEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "workspace_uuid": workspace_uuid,
            "workspace_slug": slug,
            "repository": repository(payload.get("repository")),
            "pull_request": pull_request(payload.get("pullrequest")),
            "comment_id": comment.get("id"),
            "command": command,
            "actor": commenter,
        }
    )


def push_event(delivery_id: str, payload: dict[str, Any]) -> BitbucketPushEvent | Ignored:
    """A push that moved the repository's main branch; Ignored for tags, deletions and other branches.

    Bitbucket's push payloads carry no file list, so whether `.prgate.yml` changed is the backend's
    to find out. When the payload names no main branch (`repository.mainbranch` is often absent),
    the first branch the push moved is forwarded with `main_branch: null` and the backend compares
    it with the main branch it knows.
    """
    repo = repository(payload.get("repository"))
    changes = _dict(payload.get("push")).get("changes")
    moved = [
        new for new in (_dict(change).get("new") for change in (changes if isinstance(changes, list) else []))
        if isinstance(new, dict) and new.get("type") == "branch" and isinstance(new.get("name"), str)
    ]
    chosen = next((new for new in moved if repo.main_branch is None or new["name"] == repo.main_branch), None)
    if chosen is None:
        return Ignored(NOT_MAIN_BRANCH)
    workspace_uuid, slug = _workspace(payload)
    actor = payload.get("actor")
    return BitbucketPushEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "workspace_uuid": workspace_uuid,
            "workspace_slug": slug,
            "repository": repo,
            "branch": chosen["name"],
            "head_commit": _dict(chosen.get("target")).get("hash"),
            "actor": account(actor) if isinstance(actor, dict) else None,
        }
    )


def normalize(event_key: str, delivery_id: str, payload: dict[str, Any]) -> BitbucketEvent | Ignored:
    """The contract model of a delivery, or why it is not forwarded."""
    if event_key in PR_EVENT_KEYS:
        return pull_request_event(event_key, delivery_id, payload)
    if event_key == COMMENT_EVENT_KEY:
        return command_event(delivery_id, payload)
    if event_key == PUSH_EVENT_KEY:
        return push_event(delivery_id, payload)
    return Ignored(UNKNOWN_EVENT)
