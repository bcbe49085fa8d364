"""GitHub's REST JSON for the simulator's records."""

from __future__ import annotations

import hashlib

from prgate.simulator.core.types import JsonDict, iso
from prgate.simulator.github.model import (
    ROLE_TO_PERMISSION,
    AccessToken,
    CommitStatus,
    Installation,
    IssueComment,
    PullRequest,
    Repository,
    SimApp,
    SimUser,
    node_id,
)
from prgate.simulator.github.state import SimulatorState


class Renderer:
    """Renders state objects as GitHub's REST JSON; API URLs point at ``api_base``."""

    def __init__(self, state: SimulatorState, api_base: str | None = None) -> None:
        self.state = state
        self.api = (api_base or state.config.api_base_url).rstrip("/")
        self.html = state.config.html_base_url.rstrip("/")

    def user(self, user: SimUser) -> JsonDict:
        api_user = f"{self.api}/users/{user.login}"
        html_path = f"apps/{user.login.removesuffix('[bot]')}" if user.type == "Bot" else user.login
        return {
            "login": user.login,
            "id": user.id,
            "node_id": node_id("Bot" if user.type == "Bot" else user.type, user.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api_user,
            "html_url": f"{self.html}/{html_path}",
            "followers_url": f"{api_user}/followers",
            "following_url": f"{api_user}/following{{/other_user}}",
            "gists_url": f"{api_user}/gists{{/gist_id}}",
            "starred_url": f"{api_user}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api_user}/subscriptions",
            "organizations_url": f"{api_user}/orgs",
            "repos_url": f"{api_user}/repos",
            "events_url": f"{api_user}/events{{/privacy}}",
            "received_events_url": f"{api_user}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def repository(self, repo: Repository) -> JsonDict:
        base = f"{self.api}/repos/{repo.full_name}"
        owner = self.state.ensure_user(repo.owner_login)
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        ts = iso(repo.created_at)
        data: JsonDict = {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(owner),
            "html_url": f"{self.html}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": base,
        }
        data.update({key: base + suffix for key, suffix in templated.items()})
        host = self.html.split("://", 1)[-1]
        data.update(
            {
                "git_url": f"git://{host}/{repo.full_name}.git",
                "ssh_url": f"git@{host}:{repo.full_name}.git",
                "clone_url": f"{self.html}/{repo.full_name}.git",
                "svn_url": f"{self.html}/{repo.full_name}",
                "mirror_url": None,
                "homepage": None,
                "language": None,
                "forks": 0,
                "forks_count": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "watchers": 0,
                "network_count": 0,
                "subscribers_count": 0,
                "size": 0,
                "default_branch": repo.default_branch,
                "open_issues": self._open_pulls(repo.id),
                "open_issues_count": self._open_pulls(repo.id),
                "is_template": False,
                "topics": [],
                "has_issues": True,
                "has_projects": True,
                "has_wiki": True,
                "has_pages": False,
                "has_downloads": True,
                "has_discussions": False,
                "archived": False,
                "disabled": False,
                "visibility": "private" if repo.private else "public",
                "license": None,
                "pushed_at": ts,
                "created_at": ts,
                "updated_at": ts,
                "allow_forking": True,
                "web_commit_signoff_required": False,
            }
        )
        return data

    def _open_pulls(self, repo_id: int) -> int:
        return sum(1 for (rid, _), p in self.state.pulls.items() if rid == repo_id and p.state == "open")

    def installation(self, installation: Installation) -> JsonDict:
        config = self.state.config
        account = installation.account
        return {
            "id": installation.id,
            "client_id": config.client_id,
            "account": self.user(account),
            "repository_selection": installation.repository_selection,
            "access_tokens_url": f"{self.api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": (
                f"{self.html}/organizations/{account.login}/settings/installations/{installation.id}"
                if account.type == "Organization"
                else f"{self.html}/settings/installations/{installation.id}"
            ),
            "app_id": config.app_id,
            "app_slug": config.app_slug,
            "target_id": account.id,
            "target_type": account.type,
            "permissions": dict(installation.permissions),
            "events": ["pull_request", "installation", "installation_repositories"],
            "created_at": iso(installation.created_at),
            "updated_at": iso(installation.updated_at),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None if installation.suspended_at is None else self.user(account),
            "suspended_at": None if installation.suspended_at is None else iso(installation.suspended_at),
        }

    def pull_request(self, pr: PullRequest, full: bool = True) -> JsonDict:
        repo = self.state.repositories[pr.repo_id]
        base = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}/pull/{pr.number}"
        repo_json = self.repository(repo)
        owner = self.state.ensure_user(repo.owner_login)
        data: JsonDict = {
            "url": f"{base}/pulls/{pr.number}",
            "id": pr.id,
            "node_id": node_id("PullRequest", pr.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{base}/issues/{pr.number}",
            "number": pr.number,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user(pr.user),
            "body": pr.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": None if pr.closed_at is None else iso(pr.closed_at),
            "merged_at": None if pr.merged_at is None else iso(pr.merged_at),
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "draft": pr.draft,
            "commits_url": f"{base}/pulls/{pr.number}/commits",
            "review_comments_url": f"{base}/pulls/{pr.number}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{base}/issues/{pr.number}/comments",
            "statuses_url": f"{base}/statuses/{pr.head_sha}",
            "head": {
                "label": f"{pr.user.login}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": self.user(pr.user),
                "repo": repo_json,
            },
            "base": {
                "label": f"{owner.login}:{pr.base_ref}",
                "ref": pr.base_ref,
                "sha": hashlib.sha1(f"{repo.full_name}:{pr.base_ref}".encode()).hexdigest(),
                "user": self.user(owner),
                "repo": repo_json,
            },
            "_links": {
                "self": {"href": f"{base}/pulls/{pr.number}"},
                "html": {"href": html},
                "issue": {"href": f"{base}/issues/{pr.number}"},
                "comments": {"href": f"{base}/issues/{pr.number}/comments"},
                "review_comments": {"href": f"{base}/pulls/{pr.number}/comments"},
                "review_comment": {"href": f"{base}/pulls/comments{{/number}}"},
                "commits": {"href": f"{base}/pulls/{pr.number}/commits"},
                "statuses": {"href": f"{base}/statuses/{pr.head_sha}"},
            },
            "author_association": pr.author_association,
            "auto_merge": None,
        }
        if full:
            data.update(
                {
                    "merged": pr.merged,
                    "mergeable": None if pr.state == "closed" else True,
                    "rebaseable": None if pr.state == "closed" else True,
                    "mergeable_state": "draft" if pr.draft else ("unknown" if pr.state == "closed" else "clean"),
                    "merged_by": None,
                    "comments": self.state.comment_count(pr.repo_id, pr.number),
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": 1,
                    "additions": 1,
                    "deletions": 0,
                    "changed_files": 1,
                }
            )
        return data

    def comment(self, comment: IssueComment) -> JsonDict:
        repo = self.state.repositories.get(comment.repo_id)
        full_name = repo.full_name if repo else "unknown/unknown"
        base = f"{self.api}/repos/{full_name}"
        return {
            "id": comment.id,
            "node_id": node_id("IssueComment", comment.id),
            "url": f"{base}/issues/comments/{comment.id}",
            "html_url": f"{self.html}/{full_name}/pull/{comment.issue_number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "issue_url": f"{base}/issues/{comment.issue_number}",
            "author_association": comment.author_association,
            "performed_via_github_app": None if comment.via_app is None else self.app(comment.via_app),
            "reactions": {
                "url": f"{base}/issues/comments/{comment.id}/reactions",
                "total_count": 0,
                "+1": 0,
                "-1": 0,
                "laugh": 0,
                "hooray": 0,
                "confused": 0,
                "heart": 0,
                "rocket": 0,
                "eyes": 0,
            },
        }

    def app(self, app: SimApp) -> JsonDict:
        """An App as GitHub renders it in `GET /app` and `performed_via_github_app`."""
        ts = iso(app.created_at)
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("Integration", app.id),
            "client_id": f"Iv1.{app.id:016x}",
            "owner": self.user(app.owner),
            "name": app.name,
            "description": "",
            "external_url": f"{self.html}/apps/{app.slug}",
            "html_url": f"{self.html}/apps/{app.slug}",
            "created_at": ts,
            "updated_at": ts,
            "permissions": {"issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "write"},
            "events": ["pull_request", "installation", "installation_repositories"],
        }

    def status(self, status: CommitStatus) -> JsonDict:
        repo = self.state.repositories.get(status.repo_id)
        full_name = repo.full_name if repo else "unknown/unknown"
        ts = iso(status.created_at)
        return {
            "url": f"{self.api}/repos/{full_name}/statuses/{status.sha}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{status.creator.id}?v=4",
            "id": status.id,
            "node_id": node_id("StatusContext", status.id),
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": ts,
            "updated_at": ts,
            "creator": self.user(status.creator),
        }

    def installation_token(self, token: AccessToken) -> JsonDict:
        installation = self.state.installations[token.installation_id]
        data: JsonDict = {
            "token": token.token,
            "expires_at": iso(token.expires_at),
            "permissions": dict(token.permissions),
            "repository_selection": "selected"
            if token.repository_ids is not None
            else installation.repository_selection,
        }
        if token.repository_ids is not None:
            data["repositories"] = [
                self.repository(self.state.repositories[r])
                for r in sorted(token.repository_ids)
                if r in self.state.repositories
            ]
        return data

    def collaborator_permission(self, role: str, user: SimUser) -> JsonDict:
        permission = ROLE_TO_PERMISSION[role]
        user_json = self.user(user)
        user_json["permissions"] = {
            "admin": role == "admin",
            "maintain": role in ("admin", "maintain"),
            "push": permission in ("admin", "write"),
            "triage": role in ("admin", "maintain", "write", "triage"),
            "pull": role != "none",
        }
        user_json["role_name"] = role
        return {"permission": permission, "role_name": role, "user": user_json}
