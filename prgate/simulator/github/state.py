"""In-memory state of the GitHub simulator: what lives inside a repository (pull requests, comments,
commit statuses, collaborators) on top of :class:`.accounts.AccountsState`."""

from __future__ import annotations

import hashlib

from prgate.simulator.core.errors import NotFound, SimulatorError
from prgate.simulator.github.accounts import AccountsState
from prgate.simulator.github.model import (
    ROLES,
    STATUS_STATES,
    CommitStatus,
    IssueComment,
    PrState,
    PullRequest,
    SimApp,
    SimCommit,
    SimUser,
)


class SimulatorState(AccountsState):
    """All simulated GitHub data for one app instance."""

    # ---- files on the default branch (the contents API) --------------------------------------------

    def commit_file(self, full_name: str, path: str, content: bytes | None, message: str, author: str) -> SimCommit:
        """A commit on the default branch that writes (or with None deletes) one file."""
        repo = self.repo_by_name(full_name)
        history = self.commits.setdefault(repo.id, [])
        tree = dict(history[-1].tree) if history else {}
        existed = path in tree
        if content is None:
            if not existed:
                raise SimulatorError(422, f"{path} does not exist")
            del tree[path]
        else:
            tree[path] = content
        now = self.clock()
        seed = f"{repo.id}:{len(history)}:{path}:{message}:{now}".encode()
        commit = SimCommit(
            sha=hashlib.sha1(seed, usedforsecurity=False).hexdigest(), message=message, author=author,
            timestamp=now, tree=tree,
            added=(path,) if content is not None and not existed else (),
            modified=(path,) if content is not None and existed else (),
            removed=(path,) if content is None else (),
        )
        history.append(commit)
        return commit

    def file_at(self, repo_id: int, path: str, ref: str | None) -> bytes | None:
        """The file at ``ref`` (the default branch's name or a commit sha; None: the default branch).
        Raises NotFound for a ref that names no commit, as GitHub answers 404."""
        repo = self.repositories[repo_id]
        history = self.commits.get(repo_id, [])
        if ref is None or ref in (repo.default_branch, f"refs/heads/{repo.default_branch}"):
            commit = history[-1] if history else None
        else:
            commit = next((c for c in history if c.sha == ref or (len(ref) >= 7 and c.sha.startswith(ref))), None)
            if commit is None:
                raise NotFound(f"No commit found for the ref {ref}")
        return None if commit is None else commit.tree.get(path)

    # ---- pull requests -------------------------------------------------------------------------

    def upsert_pull_request(
        self,
        full_name: str,
        number: int | None = None,
        *,
        author_login: str | None = None,
        author_id: int | None = None,
        author_type: str | None = None,
        author_association: str | None = None,
        state: PrState | None = None,
        draft: bool | None = None,
        merged: bool | None = None,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> tuple[PullRequest, bool]:
        """Create the PR (``number`` None: the next free number) or update the given fields."""
        repo = self.repo_by_name(full_name)
        now = self.now()
        existing = self.pulls.get((repo.id, number)) if number is not None else None
        if existing is None:
            if author_login is None:
                raise SimulatorError(422, "author login is required to create a pull request")
            if number is None:
                number = self._next_issue_number.get(repo.id, 1)
            self._next_issue_number[repo.id] = max(self._next_issue_number.get(repo.id, 1), number + 1)
            user = self.ensure_user(author_login, author_id, author_type)
            digest = hashlib.sha1(f"{full_name}#{number}".encode()).hexdigest()
            pr = PullRequest(
                id=self._next_id("pull"),
                repo_id=repo.id,
                number=number,
                title=title or f"Pull request #{number}",
                body=body,
                user=user,
                author_association=author_association or "NONE",
                state=state or "open",
                draft=bool(draft),
                merged=bool(merged),
                head_sha=head_sha or digest,
                head_ref=head_ref or f"{user.login}/patch-{number}",
                base_ref=base_ref or repo.default_branch,
                created_at=now,
                updated_at=now,
            )
            if pr.state == "closed":
                pr.closed_at = now
            if pr.merged:
                pr.state, pr.closed_at, pr.merged_at = "closed", now, now
            self.pulls[(repo.id, pr.number)] = pr
            return pr, True
        pr = existing
        if author_login is not None:
            pr.user = self.ensure_user(author_login, author_id, author_type)
        if author_association is not None:
            pr.author_association = author_association
        if draft is not None:
            pr.draft = draft
        if head_sha is not None:
            pr.head_sha = head_sha
        if head_ref is not None:
            pr.head_ref = head_ref
        if base_ref is not None:
            pr.base_ref = base_ref
        if title is not None:
            pr.title = title
        if body is not None:
            pr.body = body
        if merged:
            pr.merged, pr.merged_at, pr.state, pr.closed_at = True, now, "closed", now
        if state is not None:
            self._set_pr_state(pr, state, now)
        pr.updated_at = now
        return pr, False

    def _set_pr_state(self, pr: PullRequest, state: PrState, now: float) -> None:
        if state == pr.state:
            return
        if state == "open" and pr.merged:
            raise SimulatorError(422, "state cannot be changed. The pull request has already been merged.")
        pr.state = state
        pr.closed_at = now if state == "closed" else None

    def get_pull_request(self, full_name: str, number: int) -> PullRequest:
        repo = self.repo_by_name(full_name)
        pr = self.pulls.get((repo.id, number))
        if pr is None:
            raise NotFound()
        return pr

    def edit_pull_request(
        self,
        full_name: str,
        number: int,
        *,
        state: PrState | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> PullRequest:
        """What ``PATCH /repos/{owner}/{repo}/pulls/{n}`` does."""
        pr = self.get_pull_request(full_name, number)
        now = self.now()
        if state is not None:
            self._set_pr_state(pr, state, now)
        if title is not None:
            pr.title = title
        if body is not None:
            pr.body = body
        pr.updated_at = now
        return pr

    def list_pull_requests(self, full_name: str, state: str = "open", direction: str = "desc") -> list[PullRequest]:
        repo = self.repo_by_name(full_name)
        pulls = [p for (rid, _), p in self.pulls.items() if rid == repo.id and state in ("all", p.state)]
        return sorted(pulls, key=lambda p: (p.created_at, p.number), reverse=direction != "asc")

    # ---- issue comments ------------------------------------------------------------------------

    def add_comment(
        self, full_name: str, number: int, body: str, user: SimUser | None = None, via_app: SimApp | None = None
    ) -> IssueComment:
        pr = self.get_pull_request(full_name, number)
        author = user or self.bot_user
        now = self.now()
        comment = IssueComment(
            id=self._next_id("comment"),
            repo_id=pr.repo_id,
            issue_number=number,
            body=body,
            user=author,
            author_association="NONE" if author.type == "Bot" else self._association(pr.repo_id, author),
            created_at=now,
            updated_at=now,
            via_app=via_app,
        )
        self.comments[comment.id] = comment
        self._issue_comments.setdefault((pr.repo_id, number), []).append(comment.id)
        return comment

    def _association(self, repo_id: int, user: SimUser) -> str:
        repo = self.repositories.get(repo_id)
        if repo is not None and repo.owner_login.lower() == user.login.lower():
            return "OWNER"
        role = self.collaborators.get((repo_id, user.login.lower()))
        return "COLLABORATOR" if role not in (None, "none") else "NONE"

    def get_comment(self, full_name: str, comment_id: int) -> IssueComment:
        repo = self.repo_by_name(full_name)
        comment = self.comments.get(comment_id)
        if comment is None or comment.repo_id != repo.id:
            raise NotFound()
        return comment

    def update_comment(self, full_name: str, comment_id: int, body: str) -> IssueComment:
        comment = self.get_comment(full_name, comment_id)
        comment.body = body
        comment.updated_at = self.now()
        return comment

    def delete_comment(self, full_name: str, comment_id: int) -> None:
        comment = self.get_comment(full_name, comment_id)
        del self.comments[comment_id]
        self._issue_comments[(comment.repo_id, comment.issue_number)].remove(comment_id)

    def comments_for(self, full_name: str, number: int) -> list[IssueComment]:
        """All comments of an issue/PR, oldest first (raises NotFound for an unknown PR)."""
        pr = self.get_pull_request(full_name, number)
        return [self.comments[c] for c in self._issue_comments.get((pr.repo_id, number), [])]

    def comment_count(self, repo_id: int, number: int) -> int:
        return len(self._issue_comments.get((repo_id, number), []))

    # ---- commit statuses -----------------------------------------------------------------------

    def add_status(
        self,
        full_name: str,
        sha: str,
        state: str,
        context: str = "default",
        description: str | None = None,
        target_url: str | None = None,
        creator: SimUser | None = None,
    ) -> CommitStatus:
        repo = self.repo_by_name(full_name)
        if state not in STATUS_STATES:
            raise SimulatorError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "Status",
                        "code": "custom",
                        "field": "state",
                        "message": f"state is not included in the list ({', '.join(STATUS_STATES)})",
                    }
                ],
            )
        status = CommitStatus(
            id=self._next_id("status"),
            repo_id=repo.id,
            sha=sha,
            state=state,
            context=context,
            description=description,
            target_url=target_url,
            creator=creator or self.bot_user,
            created_at=self.now(),
        )
        self.statuses.setdefault((repo.id, sha), []).append(status)
        return status

    def statuses_for(self, full_name: str, ref: str) -> list[CommitStatus]:
        """Statuses of a SHA (or of the head SHA of a branch with open PRs), newest first."""
        repo = self.repo_by_name(full_name)
        sha = ref
        if (repo.id, ref) not in self.statuses:
            for pr in self.pulls.values():
                if pr.repo_id == repo.id and pr.head_ref == ref:
                    sha = pr.head_sha
        return list(reversed(self.statuses.get((repo.id, sha), [])))

    # ---- collaborators -------------------------------------------------------------------------

    def set_permission(
        self,
        full_name: str,
        login: str,
        permission: str,
        user_id: int | None = None,
        user_type: str | None = None,
    ) -> None:
        if permission not in ROLES:
            raise SimulatorError(422, f"permission must be one of {', '.join(ROLES)}")
        repo = self.repo_by_name(full_name)
        self.ensure_user(login, user_id, user_type)
        self.collaborators[(repo.id, login.lower())] = permission

    def permission_of(self, full_name: str, login: str) -> tuple[str, SimUser]:
        """(role, user); a user with no role has ``read`` on a public and ``none`` on a private repo."""
        repo = self.repo_by_name(full_name)
        user = self.ensure_user(login)
        role = self.collaborators.get((repo.id, login.lower()))
        if role is None:
            role = "admin" if repo.owner_login.lower() == login.lower() else ("none" if repo.private else "read")
        return role, user
