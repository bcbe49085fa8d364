"""Payloads of the GitHub webhook events prgate consumes."""

from __future__ import annotations

from datetime import UTC, datetime

from prgate.simulator.core.types import JsonDict
from prgate.simulator.github.model import (
    Installation,
    IssueComment,
    PullRequest,
    Repository,
    SimCommit,
    SimUser,
    node_id,
)
from prgate.simulator.github.render import Renderer


def _installation_ref(installation_id: int) -> JsonDict:
    return {"id": installation_id, "node_id": node_id("IntegrationInstallation", installation_id)}


def _repo_summary(repo: Repository) -> JsonDict:
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
    }


def pull_request_event(renderer: Renderer, pr: PullRequest, action: str, sender: SimUser | None = None) -> JsonDict:
    """A ``pull_request`` payload (opened, closed, reopened, edited, ready_for_review, …)."""
    state = renderer.state
    repo = state.repositories[pr.repo_id]
    return {
        "action": action,
        "number": pr.number,
        "pull_request": renderer.pull_request(pr),
        "repository": renderer.repository(repo),
        "organization": None,
        "installation": _installation_ref(repo.installation_id),
        "sender": renderer.user(sender or pr.user),
    }


def issue_comment_event(
    renderer: Renderer, pr: PullRequest, comment: IssueComment, action: str = "created"
) -> JsonDict:
    """An ``issue_comment`` payload for a comment on a pull request: GitHub sends it with the PR as an
    ``issue`` that carries a ``pull_request`` object (that is how a receiver tells a PR from an issue)."""
    state = renderer.state
    repo = state.repositories[pr.repo_id]
    rendered = renderer.pull_request(pr, full=False)
    issue: JsonDict = {
        "id": pr.id, "node_id": node_id("Issue", pr.id), "number": pr.number, "title": rendered.get("title"),
        "state": rendered.get("state"), "user": renderer.user(pr.user), "body": rendered.get("body"),
        "html_url": rendered.get("html_url"), "url": f"{renderer.api}/repos/{repo.full_name}/issues/{pr.number}",
        "author_association": rendered.get("author_association"), "labels": [], "comments": 0,
        "pull_request": {"url": rendered.get("url"), "html_url": rendered.get("html_url")},
    }
    return {
        "action": action,
        "issue": issue,
        "comment": renderer.comment(comment),
        "repository": renderer.repository(repo),
        "organization": None,
        "installation": _installation_ref(repo.installation_id),
        "sender": renderer.user(comment.user),
    }


def installation_event(
    renderer: Renderer,
    installation: Installation,
    action: str,
    repositories: list[Repository] | None = None,
    sender: SimUser | None = None,
) -> JsonDict:
    """An ``installation`` payload (created, deleted, suspend, unsuspend)."""
    repos = repositories if repositories is not None else renderer.state.installation_repositories(installation.id)
    return {
        "action": action,
        "installation": renderer.installation(installation),
        "repositories": [_repo_summary(r) for r in repos],
        "requester": None,
        "sender": renderer.user(sender or installation.account),
    }


def installation_repositories_event(
    renderer: Renderer,
    installation: Installation,
    action: str,
    added: list[Repository] | None = None,
    removed: list[Repository] | None = None,
    sender: SimUser | None = None,
) -> JsonDict:
    """An ``installation_repositories`` payload (added, removed)."""
    return {
        "action": action,
        "installation": renderer.installation(installation),
        "repository_selection": installation.repository_selection,
        "repositories_added": [_repo_summary(r) for r in added or []],
        "repositories_removed": [_repo_summary(r) for r in removed or []],
        "requester": None,
        "sender": renderer.user(sender or installation.account),
    }


def repository_renamed_event(
    renderer: Renderer, repo: Repository, previous_full_name: str, sender: SimUser | None = None
) -> JsonDict:
    """A ``repository`` payload with action ``renamed``: ``changes`` holds the previous name."""
    state = renderer.state
    owner = state.ensure_user(repo.owner_login)
    return {
        "action": "renamed",
        "changes": {"repository": {"name": {"from": previous_full_name.split("/", 1)[1]}}},
        "repository": renderer.repository(repo),
        "installation": _installation_ref(repo.installation_id),
        "sender": renderer.user(sender or owner),
    }


def push_event(renderer: Renderer, repo: Repository, before: str, commit: SimCommit, pusher: SimUser) -> JsonDict:
    """A ``push`` of one commit to the default branch, in the shape of GitHub's payload
    (tests/fixtures/octokit-webhooks-schemas: push)."""
    web_url = f"https://github.com/{repo.full_name}"
    person = {"name": pusher.login, "email": f"{pusher.login}@users.noreply.github.com", "username": pusher.login}
    timestamp = datetime.fromtimestamp(commit.timestamp, UTC).isoformat().replace("+00:00", "Z")
    entry = {
        "id": commit.sha, "tree_id": commit.sha[::-1], "distinct": True, "message": commit.message,
        "timestamp": timestamp, "url": f"{web_url}/commit/{commit.sha}", "author": person, "committer": person,
        "added": list(commit.added), "removed": list(commit.removed), "modified": list(commit.modified),
    }
    return {
        "ref": f"refs/heads/{repo.default_branch}", "before": before, "after": commit.sha,
        "created": before == "0" * 40, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"{web_url}/compare/{before[:12]}...{commit.sha[:12]}",
        "commits": [entry], "head_commit": entry,
        "repository": renderer.repository(repo),
        "pusher": {"name": pusher.login, "email": person["email"]},
        "sender": renderer.user(pusher),
        "installation": _installation_ref(repo.installation_id),
    }
