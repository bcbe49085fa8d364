"""The Bitbucket simulator's in-memory state and the operations on it (no HTTP here).

Every operation a REST handler or a control route performs is a method, so the webhook a change
sends is built from the state the change left. Errors are Bitbucket's (:class:`ApiError`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable

from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.errors import ApiError, not_found
from prgate.simulator.bitbucket.model import (
    BuildState,
    BuildStatus,
    Comment,
    Commit,
    DeliveryAttempt,
    Hook,
    Permission,
    PullRequest,
    Repository,
    Token,
    User,
    Workspace,
)
from prgate.simulator.bitbucket.rates import RollingRateLimiter
from prgate.simulator.core.faults import FaultInjector
from prgate.simulator.core.records import RequestRecord

MIN_HASH_PREFIX = 7


def braced(value: str | None = None) -> str:
    """`{uuid}` as Bitbucket writes it; a new one when ``value`` is None."""
    raw = (value or str(uuidlib.uuid4())).strip().strip("{}").lower()
    return "{" + str(uuidlib.UUID(raw)) + "}"


class BitbucketState:
    def __init__(self, config: BitbucketConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.rate_limiter = RollingRateLimiter(config.rate_limit_per_hour)
        self.request_log: deque[RequestRecord] = deque(maxlen=config.request_log_limit)
        self._clear()

    def _clear(self) -> None:
        self.workspaces: dict[str, Workspace] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.repositories: dict[tuple[str, str], Repository] = {}
        self.permissions: dict[tuple[str, str, str], Permission] = {}
        self.pulls: dict[tuple[str, str, int], PullRequest] = {}
        self.comments: dict[int, Comment] = {}
        self.statuses: dict[tuple[str, str, str, str], BuildStatus] = {}
        self.hooks: dict[str, Hook] = {}
        self.deliveries: list[DeliveryAttempt] = []
        self.delivery_bodies: dict[str, bytes] = {}  # body sha256 -> body, for "Resend request"
        self._next_comment = 100_000
        self._next_commit = 0

    def reset(self) -> None:
        """Forget all data, tokens, logs, rate-limit windows and faults (the config stays)."""
        self._clear()
        self.request_log.clear()
        self.faults.reset()
        self.faults.configure(self.config.faults)
        self.rate_limiter.reset()

    def now(self) -> float:
        return self.clock()

    def record_request(self, record: RequestRecord) -> None:
        self.request_log.append(record)

    # --- workspaces, users, tokens -------------------------------------------------------------

    def add_workspace(self, slug: str, uuid: str | None = None, name: str | None = None) -> Workspace:
        if slug in self.workspaces:
            raise ApiError(409, f"workspace {slug!r} exists")
        workspace = Workspace(uuid=braced(uuid), slug=slug, name=name or slug)
        self.workspaces[slug] = workspace
        return workspace

    def workspace(self, ref: str) -> Workspace:
        """By slug or by braced UUID, as Bitbucket accepts either in a path."""
        found = self.workspaces.get(ref)
        if found is None and ref.startswith("{"):
            found = next((w for w in self.workspaces.values() if w.uuid == ref.lower()), None)
        if found is None:
            raise not_found(f"No workspace with identifier '{ref}'.")
        return found

    def create_token(self, workspace: str, name: str = "prgate") -> Token:
        """A workspace access token; Bitbucket gives each one its own bot account (`app_user`), which
        authors whatever the token writes."""
        ws = self.workspace(workspace)
        bot = self.add_user(f"557058:{uuidlib.uuid4()}", nickname=f"{ws.slug}-{name}",
                            display_name=f"{name} (access token)", type="app_user")
        token = Token(value="ATCTT3x" + secrets.token_urlsafe(40), kind="workspace", workspace=ws.slug,
                      account_id=bot.account_id)
        self.tokens[token.value] = token
        return token

    def add_user(self, account_id: str, *, uuid: str | None = None, nickname: str | None = None,
                 display_name: str | None = None, type: str = "user") -> User:
        user = User(account_id=account_id, uuid=braced(uuid), nickname=nickname or account_id.split(":")[-1][:12],
                    display_name=display_name or nickname or account_id, type=type)
        self.users[account_id] = user
        return user

    def user(self, account_id: str) -> User:
        found = self.users.get(account_id)
        if found is None:
            raise not_found(f"No user with account_id '{account_id}'.")
        return found

    def user_by_ref(self, ref: str) -> User | None:
        """An account id, a braced UUID or a nickname (the OAuth sign-in page accepts any)."""
        if ref in self.users:
            return self.users[ref]
        return next((u for u in self.users.values() if ref in (u.uuid, u.nickname)), None)

    def user_token(self, account_id: str) -> Token:
        self.user(account_id)
        token = Token(value=secrets.token_urlsafe(48), kind="user", account_id=account_id,
                      expires_at=self.now() + self.config.token_ttl_seconds)
        self.tokens[token.value] = token
        return token

    # --- repositories and commits ------------------------------------------------------------

    def _new_hash(self, seed: str) -> str:
        self._next_commit += 1
        return hashlib.sha1(f"{self._next_commit}:{seed}".encode()).hexdigest()

    def _commit(self, repo: Repository, branch: str, files: dict[str, str], message: str,
                author: str | None, parent: str | None) -> Commit:
        commit = Commit(hash=self._new_hash(f"{repo.full_name}:{branch}:{message}"), message=message,
                        author=author, date=self.now(), parents=[parent] if parent else [], files=files)
        repo.commits[commit.hash] = commit
        repo.branches[branch] = commit.hash
        return commit

    def add_repository(self, workspace: str, slug: str, *, mainbranch: str = "main", uuid: str | None = None,
                       files: dict[str, str] | None = None, is_private: bool = True,
                       name: str | None = None) -> Repository:
        self.workspace(workspace)
        if (workspace, slug) in self.repositories:
            raise ApiError(400, "Repository with this Slug and Owner already exists.")
        repo = Repository(uuid=braced(uuid), slug=slug, name=name or slug, workspace=workspace,
                          mainbranch=mainbranch, is_private=is_private, created_on=self.now())
        self._commit(repo, mainbranch, dict(files or {"README.md": f"# {slug}\n"}), "Initial commit", None, None)
        self.repositories[(workspace, slug)] = repo
        return repo

    def repository(self, workspace: str, slug: str) -> Repository:
        ws = self.workspace(workspace)
        repo = self.repositories.get((ws.slug, slug))
        if repo is None and slug.startswith("{"):
            repo = next((r for r in self.repositories.values()
                         if r.workspace == ws.slug and r.uuid == slug.lower()), None)
        if repo is None:
            raise not_found("You may not have access to this repository or it no longer exists in this workspace. "
                            "If you think this repository exists and you have access, make sure you are "
                            "authenticated.")
        return repo

    def resolve_commit(self, repo: Repository, ref: str) -> Commit:
        """A branch name, a full hash, or an unambiguous prefix of at least 7 characters."""
        if ref in repo.branches:
            return repo.commits[repo.branches[ref]]
        lowered = ref.lower()
        if len(lowered) >= MIN_HASH_PREFIX and all(c in "0123456789abcdef" for c in lowered):
            matches = [h for h in repo.commits if h.startswith(lowered)]
            if len(matches) == 1:
                return repo.commits[matches[0]]
        raise not_found(f"Commit not found: {ref}")

    def commit_file(self, workspace: str, slug: str, path: str, content: str | None, *, author: str | None,
                    branch: str | None = None, message: str | None = None) -> tuple[Repository, str, Commit, Commit]:
        """Write (or, with ``content`` None, delete) a file on a branch → (repo, branch, old, new)."""
        repo = self.repository(workspace, slug)
        target = branch or repo.mainbranch
        if target not in repo.branches:
            raise ApiError(400, f"branch {target!r} does not exist")
        old = repo.commits[repo.branches[target]]
        files = dict(old.files)
        if content is None:
            files.pop(path, None)
        else:
            files[path] = content
        new = self._commit(repo, target, files, message or f"Update {path}", author, old.hash)
        return repo, target, old, new

    def set_permission(self, workspace: str, slug: str, account_id: str, level: Permission | None) -> None:
        repo = self.repository(workspace, slug)
        self.user(account_id)
        key = (repo.workspace, repo.slug, account_id)
        if level is None:
            self.permissions.pop(key, None)
        else:
            self.permissions[key] = level

    # --- pull requests -----------------------------------------------------------------------

    def open_pull_request(self, workspace: str, slug: str, *, author: str, title: str, source_branch: str,
                          destination_branch: str | None = None, draft: bool = False,
                          description: str = "", files: dict[str, str] | None = None,
                          number: int | None = None) -> PullRequest:
        """``number`` picks the PR's id (a control-API extension: a driver whose simulator restarted
        over data kept elsewhere, as `prgate up`'s demo, must not reuse ids); unset, the next one."""
        repo = self.repository(workspace, slug)
        if number is not None and (repo.workspace, repo.slug, number) in self.pulls:
            raise ApiError(409, f"pull request {number} exists")
        self.user(author)
        destination = destination_branch or repo.mainbranch
        if destination not in repo.branches:
            raise ApiError(400, f"branch {destination!r} does not exist")
        base = repo.commits[repo.branches[destination]]
        if source_branch not in repo.branches:
            tree = {**base.files, **(files or {f"{source_branch.replace('/', '_')}.txt": title + "\n"})}
            self._commit(repo, source_branch, tree, title, author, base.hash)
        head = repo.branches[source_branch]
        if number is None:
            number = 1 + max((k[2] for k in self.pulls if k[:2] == (repo.workspace, repo.slug)), default=0)
        now = self.now()
        pr = PullRequest(id=number, workspace=repo.workspace, repo=repo.slug, title=title, description=description,
                         author=author, source_branch=source_branch, source_hash=head,
                         destination_branch=destination, destination_hash=base.hash, state="OPEN", draft=draft,
                         created_on=now, updated_on=now)
        self.pulls[(repo.workspace, repo.slug, number)] = pr
        return pr

    def pull_request(self, workspace: str, slug: str, pr_id: int) -> PullRequest:
        repo = self.repository(workspace, slug)
        pr = self.pulls.get((repo.workspace, repo.slug, pr_id))
        if pr is None:
            raise not_found(f"No pull request with id {pr_id}")
        return pr

    def pulls_of(self, workspace: str, slug: str) -> list[PullRequest]:
        repo = self.repository(workspace, slug)
        return sorted((p for k, p in self.pulls.items() if k[:2] == (repo.workspace, repo.slug)),
                      key=lambda p: -p.id)

    def _open(self, pr: PullRequest) -> None:
        if pr.state != "OPEN":
            raise ApiError(400, f"You can't modify a pull request that is {pr.state.lower()}.")

    def push_to_pull_request(self, workspace: str, slug: str, pr_id: int, *, message: str | None = None,
                             files: dict[str, str] | None = None) -> PullRequest:
        pr = self.pull_request(workspace, slug, pr_id)
        self._open(pr)
        repo = self.repository(workspace, slug)
        head = repo.commits[pr.source_hash]
        tree = {**head.files, **(files or {f"change-{self._next_commit + 1}.txt": "more\n"})}
        commit = self._commit(repo, pr.source_branch, tree, message or "Another change", pr.author, head.hash)
        pr.source_hash = commit.hash
        pr.updated_on = self.now()
        return pr

    def set_draft(self, workspace: str, slug: str, pr_id: int, draft: bool) -> PullRequest:
        pr = self.pull_request(workspace, slug, pr_id)
        self._open(pr)
        pr.draft = draft
        pr.updated_on = self.now()
        return pr

    def merge(self, workspace: str, slug: str, pr_id: int, account_id: str) -> PullRequest:
        pr = self.pull_request(workspace, slug, pr_id)
        self.user(account_id)
        self._open(pr)
        repo = self.repository(workspace, slug)
        head = repo.commits[pr.source_hash]
        merged = self._commit(repo, pr.destination_branch, dict(head.files), f"Merged in {pr.source_branch}",
                              account_id, repo.branches[pr.destination_branch])
        pr.state, pr.closed_by, pr.merge_commit, pr.updated_on = "MERGED", account_id, merged.hash, self.now()
        return pr

    def decline(self, workspace: str, slug: str, pr_id: int, account_id: str | None) -> PullRequest:
        """Decline an open PR. Bitbucket refuses a PR that is not open with 400 (docs/bitbucket.md)."""
        pr = self.pull_request(workspace, slug, pr_id)
        if pr.state != "OPEN":
            raise ApiError(400, f"You can't decline a pull request that is {pr.state.lower()}.")
        pr.state, pr.closed_by, pr.updated_on = "DECLINED", account_id, self.now()
        return pr

    # --- comments ------------------------------------------------------------------------------

    def add_comment(self, workspace: str, slug: str, pr_id: int, account_id: str, raw: str) -> Comment:
        pr = self.pull_request(workspace, slug, pr_id)
        self.user(account_id)
        self._next_comment += 1
        now = self.now()
        comment = Comment(id=self._next_comment, workspace=pr.workspace, repo=pr.repo, pr_id=pr.id,
                          user=account_id, raw=raw, created_on=now, updated_on=now)
        self.comments[comment.id] = comment
        return comment

    def comments_of(self, workspace: str, slug: str, pr_id: int) -> list[Comment]:
        pr = self.pull_request(workspace, slug, pr_id)
        return sorted((c for c in self.comments.values()
                       if (c.workspace, c.repo, c.pr_id) == (pr.workspace, pr.repo, pr.id)), key=lambda c: c.id)

    def comment(self, workspace: str, slug: str, pr_id: int, comment_id: int) -> Comment:
        pr = self.pull_request(workspace, slug, pr_id)
        comment = self.comments.get(comment_id)
        if comment is None or (comment.workspace, comment.repo, comment.pr_id) != (pr.workspace, pr.repo, pr.id):
            raise not_found(f"No comment with id {comment_id}")
        return comment

    def update_comment(self, workspace: str, slug: str, pr_id: int, comment_id: int, account_id: str | None,
                       raw: str) -> Comment:
        comment = self.comment(workspace, slug, pr_id, comment_id)
        if account_id is not None and comment.user != account_id:
            raise ApiError(403, "You can only edit your own comments.")
        comment.raw, comment.updated_on = raw, self.now()
        return comment

    # --- build statuses ------------------------------------------------------------------------

    def set_status(self, workspace: str, slug: str, ref: str, *, key: str, state: BuildState, url: str,
                   name: str | None, description: str | None, refname: str | None = None) -> BuildStatus:
        repo = self.repository(workspace, slug)
        commit = self.resolve_commit(repo, ref)
        slot = (repo.workspace, repo.slug, commit.hash, key)
        now = self.now()
        current = self.statuses.get(slot)
        if current is None:
            current = BuildStatus(key=key, workspace=repo.workspace, repo=repo.slug, commit=commit.hash,
                                  state=state, url=url, name=name, description=description, created_on=now,
                                  updated_on=now, refname=refname)
            self.statuses[slot] = current
        else:
            current.state, current.url, current.updated_on = state, url, now
            if name is not None:
                current.name = name
            if description is not None:
                current.description = description
        return current

    def statuses_of(self, workspace: str, slug: str, ref: str) -> list[BuildStatus]:
        repo = self.repository(workspace, slug)
        commit = self.resolve_commit(repo, ref)
        return sorted((s for k, s in self.statuses.items() if k[:3] == (repo.workspace, repo.slug, commit.hash)),
                      key=lambda s: s.created_on)

    # --- hooks and deliveries ------------------------------------------------------------------

    def create_hook(self, workspace: str, *, url: str, description: str, active: bool, secret: str | None,
                    events: list[str]) -> Hook:
        ws = self.workspace(workspace)
        hook = Hook(uuid=braced(), workspace=ws.slug, url=url, description=description, active=active,
                    secret=secret, events=events, created_at=self.now())
        self.hooks[hook.uuid] = hook
        return hook

    def hook(self, workspace: str, uid: str) -> Hook:
        ws = self.workspace(workspace)
        try:
            key = braced(uid)
        except ValueError:
            raise not_found("Webhook not found") from None
        hook = self.hooks.get(key)
        if hook is None or hook.workspace != ws.slug:
            raise not_found("Webhook not found")
        return hook

    def hooks_of(self, workspace: str) -> list[Hook]:
        ws = self.workspace(workspace)
        return sorted((h for h in self.hooks.values() if h.workspace == ws.slug), key=lambda h: h.created_at)

    def delete_hook(self, workspace: str, uid: str) -> None:
        del self.hooks[self.hook(workspace, uid).uuid]

    def subscribed(self, workspace: str, event_key: str) -> list[Hook]:
        return [h for h in self.hooks_of(workspace) if h.active and event_key in h.events]

    def record_delivery(self, attempt: DeliveryAttempt, body: bytes) -> None:
        self.deliveries.append(attempt)
        self.delivery_bodies[attempt.body_sha256] = body

    def delivery(self, request_uuid: str) -> DeliveryAttempt:
        found = next((a for a in self.deliveries if a.request_uuid == request_uuid), None)
        if found is None:
            raise not_found(f"No delivery {request_uuid}")
        return found

    def remove_repository(self, workspace: str, slug: str) -> Repository:
        """Delete a repository with its PRs, comments, statuses and permissions."""
        repo = self.repository(workspace, slug)
        key = (repo.workspace, repo.slug)
        del self.repositories[key]
        self.pulls = {k: v for k, v in self.pulls.items() if k[:2] != key}
        self.comments = {k: v for k, v in self.comments.items() if (v.workspace, v.repo) != key}
        self.statuses = {k: v for k, v in self.statuses.items() if k[:2] != key}
        self.permissions = {k: v for k, v in self.permissions.items() if k[:2] != key}
        return repo
