"""Report results to the backend in batches that form by themselves.

A result is sent at once when no report call is in flight; while one is, the results that
finish meanwhile wait and go together in the next call. No timer holds anything back, so a
lone result costs one round trip as before, and under load one call (one commit) carries many.

A backend without the batch route (an older version during a rolling deploy answers 404/405)
is reported to one action at a time from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from bot_worker.backend.client import BackendClient, BackendError
from bot_worker.providers.base import Classified
from shared_contracts.actions import (
    RESULTS_MAX,
    ActionResult,
    BatchResultItem,
    BatchResultRequest,
    ClaimedAction,
    ResultRefusal,
    ResultRequest,
)

log = logging.getLogger(__name__)

_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)
# After the lease, the action is leased again anyway: stop trying a little after it.
_GIVE_UP_AFTER_LEASE = 30.0
_REFUSALS: dict[int, ResultRefusal] = {409: "stale_lease", 404: "unknown_action"}


@dataclass(slots=True)
class _Pending:
    action: ClaimedAction
    result: ActionResult
    lease_deadline: float
    done: asyncio.Future[None] = field(repr=False)


class ResultReporter:
    def __init__(
        self,
        backend: BackendClient,
        worker_id: str,
        *,
        max_batch: int = RESULTS_MAX,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._worker_id = worker_id
        self._max_batch = max_batch
        self._sleep = sleep
        self._monotonic = monotonic
        self._queue: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self._batch_route = True

    def submit(self, action: ClaimedAction, result: Classified, lease_deadline: float) -> asyncio.Future[None]:
        """Queue a result; the future is done once the backend has it, refused it, or the lease is long gone."""
        item = ActionResult(
            action_id=action.action_id, attempt=action.attempt, outcome=result.outcome,
            error=(result.error or None) and result.error[:8000], retry_after_seconds=result.retry_after_seconds,
            comment_id=result.comment_id,
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(action, item, lease_deadline, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        return done

    async def report(self, action: ClaimedAction, result: Classified, lease_deadline: float) -> None:
        """Submit and wait for it."""
        await asyncio.shield(self.submit(action, result, lease_deadline))

    async def drain(self, timeout: float) -> None:
        """Wait (up to `timeout`) until every submitted result is delivered or given up."""
        sender = self._sender
        if sender is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sender), timeout)

    async def _send_all(self) -> None:
        delay = 0.2
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                unsent = await self._send(batch)
                if not unsent:
                    delay = 0.2
                    continue
                now = self._monotonic()
                for p in unsent:
                    if now + delay > p.lease_deadline + _GIVE_UP_AFTER_LEASE:
                        log.error("giving up reporting; the lease will expire", extra={"action_id": p.result.action_id})
                        _resolve(p)
                    else:
                        self._queue.append(p)
                await self._sleep(delay)
                delay = min(5.0, delay * 2)
        finally:
            self._sender = None
            for p in self._queue:  # only if this task was cancelled: nobody waits forever
                _resolve(p)

    async def _send(self, batch: list[_Pending]) -> list[_Pending]:
        """Send one batch; the entries to try again."""
        if not self._batch_route:
            return [p for p in batch if not await self._send_one(p)]
        try:
            answer = await self._backend.report_results(
                BatchResultRequest(worker_id=self._worker_id, results=[p.result for p in batch])
            )
        except BackendError as exc:
            if exc.status in (404, 405):
                log.warning("backend has no batch result route; reporting one action at a time")
                self._batch_route = False
                return await self._send(batch)
            if exc.retryable:
                log.warning("results not delivered yet: %s", exc)
                return batch
            log.error("results rejected: %s", exc)
            for p in batch:
                _resolve(p)
            return []
        except _TRANSIENT as exc:
            log.warning("results not delivered yet: %s", exc)
            return batch
        by_id = {item.action_id: item for item in answer.results}
        for p in batch:
            _log_applied(p, by_id.get(p.result.action_id))
            _resolve(p)
        return []

    async def _send_one(self, p: _Pending) -> bool:
        """The single-result call; False when it should be tried again."""
        r = p.result
        req = ResultRequest(
            worker_id=self._worker_id, attempt=r.attempt, outcome=r.outcome, error=r.error,
            retry_after_seconds=r.retry_after_seconds, comment_id=r.comment_id,
        )
        try:
            applied = await self._backend.report(r.action_id, req)
        except BackendError as exc:
            if exc.retryable:
                return False
            refused = _REFUSALS.get(exc.status)
            if refused is None:
                log.error("result rejected: %s", exc, extra={"action_id": r.action_id})
            else:
                _log_applied(p, BatchResultItem(action_id=r.action_id, refused=refused))
            _resolve(p)
            return True
        except _TRANSIENT:
            return False
        _log_applied(p, BatchResultItem(action_id=r.action_id, status=applied.status))
        _resolve(p)
        return True


def _log_applied(p: _Pending, item: BatchResultItem | None) -> None:
    if item is None or item.status is None:
        reason = item.refused if item is not None else "missing from the answer"
        log.warning("result refused: %s", reason, extra={"action_id": p.result.action_id})
        return
    log.info(
        "action %s", item.status.value.lower(),
        extra={"action_id": p.result.action_id, "outcome": p.result.outcome.value, "attempt": p.result.attempt,
               "installation_id": p.action.installation_id},
    )


def _resolve(p: _Pending) -> None:
    if not p.done.done():
        p.done.set_result(None)
