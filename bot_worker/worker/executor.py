"""Carry out one claimed action using only its payload, and say how it went."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot_worker.providers.github import GitHubProvider
from bot_worker.worker.outcomes import Classified, classify_exception
from bot_worker.worker.throttle import WriteThrottle
from shared_contracts.actions import ActionType, ClaimedAction, Outcome, Provider, StatusPayload

log = logging.getLogger(__name__)

# Writes each action type may need: our comment (create or edit), and the close.
_WRITES = {
    ActionType.UPSERT_PR_COMMENT: 1,
    ActionType.CLOSE_PR_WITH_COMMENT: 2,
    ActionType.REOPEN_PR_WITH_COMMENT: 2,
    ActionType.SET_COMMIT_STATUS: 1,
}


class Executor:
    def __init__(
        self,
        github: GitHubProvider,
        throttle: WriteThrottle | None,
        *,
        on_throttle_wait: Callable[[], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._github = github
        self._throttle = throttle
        self._on_throttle_wait = on_throttle_wait
        self._sleep = sleep

    async def _take_write_slots(self, action: ClaimedAction, deadline: float) -> float | None:
        """Wait for write budget; the seconds still to wait if it would outlast the lease."""
        if self._throttle is None:
            return None
        for _ in range(_WRITES[action.action_type]):
            while True:
                wait = await self._throttle.try_acquire(action.installation_id)
                if wait == 0:
                    break
                if self._on_throttle_wait is not None:
                    self._on_throttle_wait()
                if time.monotonic() + wait > deadline:
                    return wait
                await self._sleep(wait)
        return None

    async def run(self, action: ClaimedAction, lease_deadline: float) -> Classified:
        if action.provider is not Provider.GITHUB:
            return Classified(Outcome.FAILED, f"provider {action.provider.value} is not supported by this worker")
        # Leave a margin inside the lease for the request itself and the report.
        pending_wait = await self._take_write_slots(action, lease_deadline - 15)
        if pending_wait is not None:
            return Classified(Outcome.RETRYABLE_FAILURE, "write throttle: installation budget exhausted",
                              pending_wait, "throttle")
        try:
            detail = await self._perform(action)
        except Exception as exc:  # every failure becomes an outcome; none may kill the worker
            classified = classify_exception(exc)
            log.warning(
                "action failed: %s", classified.error,
                extra={"action_id": action.action_id, "installation_id": action.installation_id,
                       "outcome": classified.outcome.value},
            )
            return classified
        log.info(detail, extra={"action_id": action.action_id, "installation_id": action.installation_id})
        return Classified(Outcome.SUCCEEDED, None)

    async def _perform(self, action: ClaimedAction) -> str:
        # By repository id: the stored name may since belong to another repository (rename + reuse).
        gh, inst, repo, number = self._github, action.installation_id, action.repo_id, action.github_pr_number
        p = action.payload
        if isinstance(p, StatusPayload):
            await gh.set_commit_status(inst, repo, p)
            return f"status {p.state} on {p.sha[:7]}"
        detail = []
        if action.action_type is ActionType.REOPEN_PR_WITH_COMMENT:
            # Reopen first: the comment then reads right on an open PR.
            reopened = await gh.set_pull_request_state(inst, repo, number, "open")
            detail.append(f"reopen {reopened.value}")
        comment = await gh.upsert_comment(inst, repo, number, p.marker, p.body)
        detail.append(f"comment {comment.value}")
        if action.action_type is ActionType.CLOSE_PR_WITH_COMMENT:
            closed = await gh.set_pull_request_state(inst, repo, number, "closed")
            detail.append(f"close {closed.value}")
        return "; ".join(detail)
