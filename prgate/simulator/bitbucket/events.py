"""Webhook payloads, built from the state a change left (shapes of the fixtures' webhooks)."""

from __future__ import annotations

from prgate.simulator.bitbucket.model import Comment, Commit, PullRequest, Repository
from prgate.simulator.bitbucket.render import Renderer, ts
from prgate.simulator.core.types import JsonDict


def pull_request_event(render: Renderer, pr: PullRequest, actor: str | None) -> JsonDict:
    repo = render.state.repository(pr.workspace, pr.repo)
    return {
        "actor": render.account(actor or pr.author),
        "pullrequest": render.pull_request(pr, short=True),
        "repository": render.repository(repo),
    }


def comment_event(render: Renderer, pr: PullRequest, comment: Comment) -> JsonDict:
    return {**pull_request_event(render, pr, comment.user), "comment": render.comment(comment)}


def _commit(render: Renderer, repo: Repository, commit: Commit) -> JsonDict:
    author = render.state.users.get(commit.author) if commit.author else None
    return {
        **render.commit_ref(repo, commit.hash, short=False),
        "message": commit.message + "\n",
        "date": ts(commit.date),
        "author": {"type": "author", "raw": f"{author.display_name} <{author.nickname}@example.test>"
                   if author else "Unknown <unknown@example.test>",
                   **({"user": render.user(author)} if author else {})},
        "parents": [render.commit_ref(repo, p, short=False) for p in commit.parents],
    }


def push_event(render: Renderer, repo: Repository, branch: str, old: Commit, new: Commit,
               actor: str | None) -> JsonDict:
    """`repo:push` of one branch moved from ``old`` to ``new`` (one commit)."""

    def ref(commit: Commit) -> JsonDict:
        return {"type": "branch", "name": branch, "target": _commit(render, repo, commit),
                "links": {"self": {"href": f"{render.api}/repositories/{repo.full_name}/refs/branches/{branch}"}}}

    return {
        "actor": render.account(actor),
        "repository": render.repository(repo),
        "push": {"changes": [{
            "old": ref(old), "new": ref(new), "created": False, "forced": False, "closed": False,
            "truncated": False, "commits": [_commit(render, repo, new)],
            "links": {"diff": {"href": f"{render.api}/repositories/{repo.full_name}/diff/{new.hash}..{old.hash}"}},
        }]},
    }
