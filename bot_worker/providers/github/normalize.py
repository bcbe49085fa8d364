"""GitHub webhook payload → `shared_contracts` request models. Pure: no I/O.

Pydantic raises `ValidationError` for a payload missing what the contract
needs; the receiver answers that with 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot_worker.providers.commands import parse_command
from shared_contracts.events import (
    Account,
    CommandEvent,
    ConfigPushEvent,
    InstallationInfo,
    InstallationSyncEvent,
    PullRequest,
    PullRequestEvent,
    Repository,
    RepositoryRenamedEvent,
)
from shared_contracts.repo_config import CONFIG_PATH

FORWARDED_EVENTS = frozenset({"pull_request", "installation", "installation_repositories", "repository"})
# Of `repository` events only a rename changes what prgate stores (the name of a known id).
FORWARDED_REPOSITORY_ACTIONS = frozenset({"renamed"})


class NotForwardable(ValueError):
    """The payload is valid JSON but cannot be routed (e.g. no installation)."""


def _installation_id(payload: dict[str, Any]) -> int:
    installation = payload.get("installation")
    if not isinstance(installation, dict) or not isinstance(installation.get("id"), int):
        raise NotForwardable("payload has no installation: is this webhook configured on the GitHub App?")
    return int(installation["id"])


def pull_request(pr: dict[str, Any]) -> PullRequest:
    """A pull request object, as webhooks and `GET /repos/{o}/{r}/pulls/{n}` both shape it."""
    head = pr.get("head") if isinstance(pr.get("head"), dict) else {}
    return PullRequest.model_validate(
        {
            "id": pr.get("id"),
            "number": pr.get("number"),
            "title": pr.get("title") or "",
            "state": pr.get("state"),
            "draft": bool(pr.get("draft")),
            "merged": bool(pr.get("merged")),
            "head_sha": (head or {}).get("sha") or "",
            "html_url": pr.get("html_url") or "",
            "author": pr.get("user"),
            "author_association": pr.get("author_association") or "NONE",
        }
    )


def pull_request_event(delivery_id: str, payload: dict[str, Any]) -> PullRequestEvent:
    pr = payload.get("pull_request")
    if not isinstance(pr, dict):
        raise NotForwardable("pull_request payload without a pull_request object")
    return PullRequestEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "event": "pull_request",
            "action": payload.get("action"),
            "installation_id": _installation_id(payload),
            "repository": payload.get("repository"),
            "pull_request": pull_request(pr),
            "sender": payload.get("sender"),
        }
    )


@dataclass(frozen=True, slots=True)
class CommentCommand:
    """A `/prgate <word>` comment on a pull request, before enrichment."""

    installation_id: int
    repository: Repository
    pr_number: int
    comment_id: int
    command: str
    sender: Account


def comment_command(payload: dict[str, Any]) -> CommentCommand | None:
    """The command in an `issue_comment` delivery; None when it is not one for prgate.

    Only newly created comments on pull requests whose first line is `/prgate <word>` count.
    """
    issue, comment = payload.get("issue"), payload.get("comment")
    if payload.get("action") != "created" or not isinstance(issue, dict) or not isinstance(comment, dict):
        return None
    if not isinstance(issue.get("pull_request"), dict):
        return None  # a comment on a plain issue
    command = parse_command(str(comment.get("body") or ""))
    if command is None:
        return None
    return CommentCommand(
        installation_id=_installation_id(payload),
        repository=Repository.model_validate(payload.get("repository")),
        pr_number=int(issue["number"]),
        comment_id=int(comment["id"]),
        command=command,
        sender=Account.model_validate(comment.get("user")),
    )


def command_event(
    delivery_id: str, cmd: CommentCommand, pr: dict[str, Any], permission: str
) -> CommandEvent:
    return CommandEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "installation_id": cmd.installation_id,
            "repository": cmd.repository,
            "pull_request": pull_request(pr),
            "comment_id": cmd.comment_id,
            "command": cmd.command,
            "sender": cmd.sender,
            "sender_permission": permission if permission in _PERMISSIONS else "none",
        }
    )


_PERMISSIONS = frozenset({"admin", "maintain", "write", "triage", "read", "none"})


def installation_info(raw: Any) -> InstallationInfo:
    """An installation object, as webhooks and `GET /app/installations` both shape it."""
    if not isinstance(raw, dict):
        raise NotForwardable("payload has no installation object")
    return InstallationInfo.model_validate(
        {
            "id": raw.get("id"),
            "account": raw.get("account"),
            "repository_selection": raw.get("repository_selection") or "selected",
            "suspended_at": raw.get("suspended_at"),
        }
    )


def _repos(raw: Any) -> list[Repository]:
    if raw is None:
        return []
    return [Repository.model_validate(r) for r in raw]


def installation_sync_event(delivery_id: str, event: str, payload: dict[str, Any]) -> InstallationSyncEvent:
    if event == "installation":
        added = payload.get("repositories") if payload.get("action") == "created" else None
        removed = None
    else:
        added, removed = payload.get("repositories_added"), payload.get("repositories_removed")
    return InstallationSyncEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "event": event,
            "action": payload.get("action"),
            "installation": installation_info(payload.get("installation")),
            "repositories_added": _repos(added),
            "repositories_removed": _repos(removed),
        }
    )


def repository_renamed_event(delivery_id: str, payload: dict[str, Any]) -> RepositoryRenamedEvent:
    return RepositoryRenamedEvent.model_validate(
        {
            "delivery_id": delivery_id,
            "installation_id": _installation_id(payload),
            "repository": payload.get("repository"),
        }
    )


def config_push_event(delivery_id: str, payload: dict[str, Any]) -> ConfigPushEvent | None:
    """A `push` worth forwarding: to the repository's default branch, touching `.github/prgate.yml`
    in one of its commits (added, modified or removed); None for every other push."""
    repo = payload.get("repository")
    if not isinstance(repo, dict) or payload.get("deleted"):
        return None
    if payload.get("ref") != f"refs/heads/{repo.get('default_branch')}":
        return None
    commits = payload.get("commits")
    touched = isinstance(commits, list) and any(
        isinstance(c, dict) and any(CONFIG_PATH in (c.get(k) or []) for k in ("added", "modified", "removed"))
        for c in commits
    )
    if not touched:
        return None
    return ConfigPushEvent.model_validate({
        "delivery_id": delivery_id,
        "installation_id": _installation_id(payload),
        "repository": {"id": repo.get("id"), "full_name": repo.get("full_name"), "private": bool(repo.get("private"))},
        "head_sha": payload.get("after"),
        "sender": payload.get("sender"),
    })
