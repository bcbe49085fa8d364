"""A repository admin exempts a pull request from the owner API: the same effect as `/prgate exempt`.

The PR as prgate last knew it (head commit, author) comes from its newest challenge; the decision
is ``challenges.commands.decide_command``'s, written by ``gate.pull_request.evaluate`` in one
transaction: the pending challenge becomes ``EXEMPTED`` (or an exemption row is recorded), and the
"exempted" comment and a success status on that head commit are enqueued. The caller has already
checked on GitHub that the user is an admin of the repository.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import asyncpg

from backend_api.challenges.commands import as_recheck, decide_command
from backend_api.gate.pull_request import evaluate
from backend_api.store import challenges
from shared_contracts.actions import Provider
from shared_contracts.events import Account, CommandEvent, Decision, PullRequest, Repository
from shared_contracts.owner import ExemptResponse


@dataclass(frozen=True, slots=True)
class Admin:
    user_id: int
    login: str


class UnknownPullRequest(Exception):
    """prgate has never decided about this PR, so it knows neither its author nor its head."""


class ExemptRefused(Exception):
    """The evaluation refused (e.g. the installation is suspended); the reason says why."""


async def exempt_pull_request(
    pool: asyncpg.Pool,
    repo_id: int,
    repo_full_name: str,
    pr_number: int,
    admin: Admin,
    *,
    public_url: str,
    max_attempts: int,
    provider: Provider = Provider.GITHUB,
) -> ExemptResponse:
    async with pool.acquire() as conn, conn.transaction():
        # The same lock `evaluate` takes (it is re-entrant), held before reading the latest state.
        await challenges.lock_pull_request(conn, repo_id, pr_number)
        latest = await challenges.latest_challenge(conn, repo_id, pr_number)
        if latest is None:
            raise UnknownPullRequest(f"prgate has no record of pull request #{pr_number}")
        if latest.status == "EXEMPTED":
            return ExemptResponse(
                repo_id=repo_id, pr_number=pr_number, challenge_id=latest.challenge_id, exempted_by=admin.login,
                already_exempted=True, enqueued_action_ids=[],
            )
        cmd = CommandEvent(
            delivery_id=f"owner-api:{uuid.uuid4().hex}", installation_id=latest.installation_id,
            repository=Repository(id=repo_id, full_name=repo_full_name),
            pull_request=PullRequest(
                id=latest.pr_id, number=pr_number, state="open", head_sha=latest.head_sha,
                author=Account(id=latest.author_id, login=latest.author_login, type="User"),
            ),
            comment_id=0, command="exempt",
            sender=Account(id=admin.user_id, login=admin.login, type="User"), sender_permission="admin",
        )
        plan, challenge_id, action_ids = await evaluate(
            conn, as_recheck(cmd), functools.partial(decide_command, cmd),
            public_url=public_url, max_attempts=max_attempts, provider=provider,
        )
        if plan.decision is not Decision.EXEMPT or challenge_id is None:
            raise ExemptRefused(plan.reason or "the pull request cannot be exempted")
    return ExemptResponse(
        repo_id=repo_id, pr_number=pr_number, challenge_id=challenge_id, exempted_by=admin.login,
        already_exempted=False, enqueued_action_ids=action_ids,
    )
