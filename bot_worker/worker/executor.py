"""Carry out one claimed action using only its payload, and say how it went."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot_worker.providers.base import ActionRunner, Classified, RequestBudget, Written
from bot_worker.providers.registry import ProviderRegistry
from bot_worker.worker.throttle import WriteThrottle
from shared_contracts.actions import ActionType, ClaimedAction, Outcome

log = logging.getLogger(__name__)

# Writes each action type may need: our comment (create or edit), and the close.
_WRITES = {
    ActionType.UPSERT_PR_COMMENT: 1,
    ActionType.CLOSE_PR_WITH_COMMENT: 2,
    ActionType.REOPEN_PR_WITH_COMMENT: 2,
    ActionType.SET_COMMIT_STATUS: 1,
}
# What an attempt keeps free at the end of its lease to report its result.
REPORT_MARGIN_SECONDS = 15.0


class Lease:
    """An attempt's lease expiry (monotonic seconds); the lease keeper moves it when the backend
    extends the lease, and every request reads it afresh."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.monotonic() if now is None else now)


class Executor:
    def __init__(
        self,
        runners: ProviderRegistry | ActionRunner,
        throttle: WriteThrottle | None,
        *,
        provider_timeout: float = 10.0,
        report_margin: float = REPORT_MARGIN_SECONDS,
        on_throttle_wait: Callable[[], None] | None = None,
    ) -> None:
        # One runner alone (tests, tools) is a registry of one.
        self._runners = runners if isinstance(runners, ProviderRegistry) else ProviderRegistry([runners])
        self._throttle = throttle
        self._provider_timeout = provider_timeout
        self._report_margin = report_margin
        self._on_throttle_wait = on_throttle_wait

    async def _take_write_slots(self, action: ClaimedAction) -> float | None:
        """Take the write budget the action needs; the seconds to wait when the installation has none.

        Never waits here: a worker slot held asleep by one tenant's throttle is a slot no other
        tenant's action can use. The action goes back with `retry_after` instead (the backend
        schedules it no sooner)."""
        if self._throttle is None:
            return None
        for _ in range(_WRITES[action.action_type]):
            wait = await self._throttle.try_acquire(action.installation_id)
            if wait > 0:
                if self._on_throttle_wait is not None:
                    self._on_throttle_wait()
                return wait
        return None

    async def run(self, action: ClaimedAction, lease: float | Lease) -> Classified:
        """`lease`: the lease's expiry (monotonic), or a Lease whose expiry may move while this runs."""
        held = lease if isinstance(lease, Lease) else Lease(lease)
        runner = self._runners.get(action.provider)
        if runner is None:
            return Classified(Outcome.FAILED, f"provider {action.provider.value} is not supported by this worker")
        pending_wait = await self._take_write_slots(action)
        if pending_wait is not None:
            return Classified(Outcome.RETRYABLE_FAILURE, "write throttle: installation budget exhausted",
                              pending_wait, "throttle")
        budget = RequestBudget(lambda: held.deadline, self._provider_timeout, self._report_margin)
        written = Written()
        try:
            await runner.perform(action, budget, written)
        except Exception as exc:  # every failure becomes an outcome; none may kill the worker
            classified = runner.classify(exc)
            log.warning(
                "action failed: %s", classified.error,
                extra={"action_id": action.action_id, "installation_id": action.installation_id,
                       "outcome": classified.outcome.value},
            )
            # A comment written before the failure is still ours to edit on the retry.
            return Classified(classified.outcome, classified.error, classified.retry_after_seconds,
                              classified.rate_limit, written.comment_id)
        log.info(written.detail, extra={"action_id": action.action_id, "installation_id": action.installation_id})
        return Classified(Outcome.SUCCEEDED, None, comment_id=written.comment_id)
