"""Bitbucket's JSON shapes, from the real responses in the fixtures (same keys, `links`, braced UUIDs).

API answers carry full hashes where Bitbucket's do; webhook payloads abbreviate them to 12
characters (``short=True``), as Bitbucket does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from prgate.simulator.bitbucket.model import BuildStatus, Comment, Hook, PullRequest, Repository, User, Workspace
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.types import JsonDict

SHORT_HASH = 12


def ts(value: float) -> str:
    """Bitbucket's timestamps: ``2018-09-21T14:57:59.455870+00:00``."""
    return datetime.fromtimestamp(value, tz=UTC).isoformat(timespec="microseconds")


def _href(url: str) -> JsonDict:
    return {"href": url}


class Renderer:
    """Renders state as Bitbucket would, with links on ``base`` (`{origin}/bitbucket`)."""

    def __init__(self, state: BitbucketState, base: str) -> None:
        self.state = state
        self.web = base.rstrip("/")
        self.api = self.web + "/2.0"

    def user(self, user: User) -> JsonDict:
        uid = quote(user.uuid, safe="")
        return {
            "display_name": user.display_name,
            "links": {
                "self": _href(f"{self.api}/users/{uid}"),
                "avatar": _href(f"{self.web}/account/{uid}/avatar/"),
                "html": _href(f"{self.web}/{uid}/"),
            },
            "type": user.type,
            "uuid": user.uuid,
            "account_id": user.account_id,
            "nickname": user.nickname,
        }

    def account(self, account_id: str | None) -> JsonDict | None:
        if account_id is None:
            return None
        user = self.state.users.get(account_id)
        return self.user(user) if user is not None else None

    def workspace(self, ws: Workspace) -> JsonDict:
        return {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": ws.name,
            "slug": ws.slug,
            "is_private": True,
            "links": {
                "self": _href(f"{self.api}/workspaces/{ws.slug}"),
                "html": _href(f"{self.web}/{ws.slug}/"),
                "avatar": _href(f"{self.web}/workspaces/{ws.slug}/avatar/"),
                "members": _href(f"{self.api}/workspaces/{ws.slug}/members"),
                "projects": _href(f"{self.api}/workspaces/{ws.slug}/projects"),
                "repositories": _href(f"{self.api}/repositories/{ws.slug}"),
                "hooks": _href(f"{self.api}/workspaces/{ws.slug}/hooks"),
            },
            "created_on": ts(0),
        }

    def repository_ref(self, repo: Repository) -> JsonDict:
        """The short form nested in PRs, hooks and statuses."""
        return {
            "type": "repository",
            "full_name": repo.full_name,
            "links": {
                "self": _href(f"{self.api}/repositories/{repo.full_name}"),
                "html": _href(f"{self.web}/{repo.full_name}"),
                "avatar": _href(f"{self.web}/{repo.full_name}/avatar/32/"),
            },
            "name": repo.name,
            "uuid": repo.uuid,
        }

    def repository(self, repo: Repository) -> JsonDict:
        ws = self.state.workspace(repo.workspace)
        ref = self.repository_ref(repo)
        api = f"{self.api}/repositories/{repo.full_name}"
        links = {
            **ref["links"],
            **{name: _href(f"{api}/{name}") for name in (
                "pullrequests", "commits", "forks", "watchers", "downloads", "hooks")},
            "branches": _href(f"{api}/refs/branches"),
            "tags": _href(f"{api}/refs/tags"),
            "source": _href(f"{api}/src"),
            "clone": [{"name": "https", "href": f"{self.web}/{repo.full_name}.git"}],
        }
        return {
            **ref,
            "links": links,
            "slug": repo.slug,
            "is_private": repo.is_private,
            "scm": "git",
            "description": "",
            "fork_policy": "no_public_forks",
            "language": "",
            "has_issues": False,
            "has_wiki": False,
            "size": 0,
            "website": None,
            "parent": None,
            "created_on": ts(repo.created_on),
            "updated_on": ts(repo.created_on),
            "mainbranch": {"type": "branch", "name": repo.mainbranch},
            "owner": {"display_name": ws.name, "type": "team", "username": ws.slug, "uuid": ws.uuid, "account_id": None,
                      "links": {"self": _href(f"{self.api}/workspaces/{quote(ws.uuid, safe='')}"),
                                "html": _href(f"{self.web}/{quote(ws.uuid, safe='')}/"),
                                "avatar": _href(f"{self.web}/account/{ws.slug}/avatar/")}},
            "workspace": {"type": "workspace", "uuid": ws.uuid, "name": ws.name, "slug": ws.slug,
                          "links": {"self": _href(f"{self.api}/workspaces/{ws.slug}"),
                                    "html": _href(f"{self.web}/{ws.slug}/"),
                                    "avatar": _href(f"{self.web}/workspaces/{ws.slug}/avatar/")}},
            "project": {"type": "project", "key": "PROJ", "name": "Project",
                        "uuid": "{00000000-0000-4000-8000-000000000001}",
                        "links": {"self": _href(f"{self.api}/workspaces/{ws.slug}/projects/PROJ"),
                                  "html": _href(f"{self.web}/{ws.slug}/workspace/projects/PROJ"),
                                  "avatar": _href(f"{self.web}/account/user/{ws.slug}/projects/PROJ/avatar/32")}},
        }

    def commit_ref(self, repo: Repository, full_hash: str, short: bool) -> JsonDict:
        shown = full_hash[:SHORT_HASH] if short else full_hash
        return {
            "hash": shown,
            "type": "commit",
            "links": {
                "self": _href(f"{self.api}/repositories/{repo.full_name}/commit/{shown}"),
                "html": _href(f"{self.web}/{repo.full_name}/commits/{shown}"),
            },
        }

    def pull_request(self, pr: PullRequest, *, short: bool = False) -> JsonDict:
        repo = self.state.repository(pr.workspace, pr.repo)
        base = f"{self.api}/repositories/{repo.full_name}/pullrequests/{pr.id}"
        comments = [c for c in self.state.comments.values()
                    if (c.workspace, c.repo, c.pr_id) == (pr.workspace, pr.repo, pr.id)]
        return {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "description": pr.description,
            "summary": {"type": "rendered", "raw": pr.description, "markup": "markdown", "html": ""},
            "rendered": {"title": {"type": "rendered", "raw": pr.title, "markup": "markdown", "html": ""},
                         "description": {"type": "rendered", "raw": pr.description, "markup": "markdown",
                                         "html": ""}},
            "state": pr.state,
            "draft": pr.draft,
            "author": self.account(pr.author),
            "source": {
                "branch": {"name": pr.source_branch, "links": {}, "sync_strategies": ["merge_commit", "rebase"]},
                "commit": self.commit_ref(repo, pr.source_hash, short),
                "repository": self.repository_ref(repo),
            },
            "destination": {
                "branch": {"name": pr.destination_branch},
                "commit": self.commit_ref(repo, pr.destination_hash, short),
                "repository": self.repository_ref(repo),
            },
            "merge_commit": None if pr.merge_commit is None else self.commit_ref(repo, pr.merge_commit, short),
            "comment_count": len(comments),
            "task_count": 0,
            "close_source_branch": False,
            "closed_by": self.account(pr.closed_by),
            "reason": pr.reason,
            "created_on": ts(pr.created_on),
            "updated_on": ts(pr.updated_on),
            "reviewers": [],
            "participants": [],
            "links": {
                "self": _href(base),
                "html": _href(f"{self.web}/{repo.full_name}/pull-requests/{pr.id}"),
                "commits": _href(base + "/commits"),
                "approve": _href(base + "/approve"),
                "diff": _href(base + "/diff"),
                "comments": _href(base + "/comments"),
                "activity": _href(base + "/activity"),
                "merge": _href(base + "/merge"),
                "decline": _href(base + "/decline"),
                "statuses": _href(base + "/statuses"),
                "diffstat": _href(f"{self.api}/repositories/{repo.full_name}/diffstat/{pr.source_hash[:12]}"),
                "request-changes": _href(base + "/request-changes"),
            },
        }

    def comment(self, comment: Comment) -> JsonDict:
        repo = self.state.repository(comment.workspace, comment.repo)
        pr_api = f"{self.api}/repositories/{repo.full_name}/pullrequests/{comment.pr_id}"
        return {
            "type": "pullrequest_comment",
            "id": comment.id,
            "created_on": ts(comment.created_on),
            "updated_on": ts(comment.updated_on),
            "content": {"type": "rendered", "raw": comment.raw, "markup": "markdown", "html": ""},
            "user": self.account(comment.user),
            "deleted": comment.deleted,
            "pending": False,
            "pullrequest": {"type": "pullrequest", "id": comment.pr_id,
                            "title": self.state.pull_request(comment.workspace, comment.repo, comment.pr_id).title,
                            "links": {"self": _href(pr_api)}},
            "links": {
                "self": _href(f"{pr_api}/comments/{comment.id}"),
                "html": _href(f"{self.web}/{repo.full_name}/pull-requests/{comment.pr_id}/_/diff#comment-{comment.id}"),
            },
        }

    def status(self, status: BuildStatus) -> JsonDict:
        repo = self.state.repository(status.workspace, status.repo)
        commit_api = f"{self.api}/repositories/{repo.full_name}/commit/{status.commit}"
        return {
            "key": status.key,
            "type": "build",
            "state": status.state,
            "name": status.name,
            "refname": status.refname,
            "commit": self.commit_ref(repo, status.commit, short=False),
            "url": status.url,
            "repository": self.repository_ref(repo),
            "description": status.description,
            "created_on": ts(status.created_on),
            "updated_on": ts(status.updated_on),
            "links": {"self": _href(f"{commit_api}/statuses/build/{quote(status.key, safe='')}"),
                      "commit": _href(commit_api)},
        }

    def hook(self, hook: Hook) -> JsonDict:
        """As the hooks fixtures: the secret never comes back, only ``secret_set``."""
        ws = self.state.workspace(hook.workspace)
        return {
            "type": "webhook_subscription",
            "uuid": hook.uuid,
            "description": hook.description,
            "url": hook.url,
            "active": hook.active,
            "skip_cert_verification": False,
            "events": list(hook.events),
            "created_at": ts(hook.created_at).replace("+00:00", "Z"),
            "subject_type": "workspace",
            "subject": {"type": "workspace", "uuid": ws.uuid, "slug": ws.slug, "name": ws.name,
                        "links": {"self": _href(f"{self.api}/workspaces/{ws.slug}")}},
            "links": {"self": _href(f"{self.api}/workspaces/{ws.slug}/hooks/{quote(hook.uuid, safe='')}")},
            "source": None,
            "read_only": False,
            "history_enabled": False,
            "secret_set": bool(hook.secret),
        }

    def permission(self, repo: Repository, account_id: str, level: str) -> JsonDict:
        return {
            "type": "repository_permission",
            "permission": level,
            "user": self.account(account_id),
            "repository": self.repository_ref(repo),
        }
