"""The worker's claim loop: lease actions sized to free concurrency, run them, report their results.

Nothing here is needed for correctness after a crash: an action whose result
never arrives is leased again when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from bot_worker.backend.client import BackendClient, BackendError
from bot_worker.providers.base import Classified
from bot_worker.worker.executor import Executor, Lease
from bot_worker.worker.reporter import ResultReporter
from shared_contracts.actions import ClaimedAction, ClaimRequest, LeaseRequest, Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)


class LoopHooks:
    """Observation points for metrics; the default does nothing."""

    def claimed(self, action: ClaimedAction) -> None: ...
    def executed(self, action: ClaimedAction, result: Classified) -> None: ...
    def claim_failed(self) -> None: ...
    def claim_latency(self, seconds: float) -> None: ...
    def lease_extended(self, outcome: str) -> None: ...


class ClaimLoop:
    def __init__(
        self,
        backend: BackendClient,
        executor: Executor,
        *,
        worker_id: str,
        concurrency: int,
        lease_seconds: int,
        wait_seconds: float,
        hooks: LoopHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._executor = executor
        self.worker_id = worker_id
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._hooks = hooks or LoopHooks()
        self._clock = clock
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._reporter = ResultReporter(backend, worker_id)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._stopped.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self._concurrency - len(self._in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await self._until_stopping_or(self._slot_freed.wait())
                continue
            started = time.perf_counter()
            try:
                response = await self._until_stopping_or(
                    self._backend.claim(
                        ClaimRequest(
                            worker_id=self.worker_id, max_actions=free, lease_seconds=self._lease_seconds,
                            wait_seconds=self._wait_seconds,
                        )
                    ),
                    grace=self._wait_seconds + 5,
                )
            except (BackendError, *_TRANSIENT) as exc:
                failures += 1
                self._hooks.claim_failed()
                delay = min(10.0, 0.2 * 2 ** min(failures, 6))
                log.warning("claim failed (%s); retrying in %.1fs", exc, delay, extra={"worker_id": self.worker_id})
                await self._until_stopping_or(asyncio.sleep(delay))
                continue
            failures = 0
            if response is None:
                continue
            self._hooks.claim_latency(time.perf_counter() - started)
            for action in response.actions:
                self._hooks.claimed(action)
                task = asyncio.create_task(self._handle(action))
                self._in_flight[action.action_id] = task
                task.add_done_callback(functools.partial(self._done, action.action_id))

    def _done(self, action_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(action_id, None)
        self._slot_freed.set()

    async def _until_stopping_or(self, awaitable: Awaitable[T], grace: float | None = None) -> T | None:
        """Await `awaitable` unless stop is requested first (a claim in progress gets `grace` to land)."""
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            waiters: list[asyncio.Future[Any]] = [task, stopper]
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if grace:
                # A claim may already have leased actions: let it land so they are run, not orphaned.
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(task), timeout=grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_TRANSIENT, BackendError):
                await task
            return None
        finally:
            stopper.cancel()

    async def _handle(self, action: ClaimedAction) -> None:
        remaining = (action.lease_expires_at - datetime.now(UTC)).total_seconds()
        lease = Lease(time.monotonic() + remaining)
        keeper = asyncio.create_task(self._keep_lease(action, lease))
        try:
            result = await self._executor.run(action, lease)
        except asyncio.CancelledError:
            result = Classified(Outcome.RETRYABLE_FAILURE, "worker shut down before finishing", 0.0)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        self._hooks.executed(action, result)
        # The slot frees as soon as the action ran: its result goes out in the reporter's next
        # batch while this worker already claims more, so claims and reports overlap.
        self._reporter.submit(action, result, lease.deadline)

    async def _keep_lease(self, action: ClaimedAction, lease: Lease) -> None:
        """While the attempt runs, extend its lease each time half of it is left.

        Granted: requests may go on until the new expiry. Refused (409: another worker holds the
        action now): the lease ends at once, so no further write starts. A backend without the
        route (404/405, during a rolling deploy) leaves the lease as claimed."""
        req = LeaseRequest(worker_id=self.worker_id, attempt=action.attempt, lease_seconds=self._lease_seconds)
        while True:
            await asyncio.sleep(max(0.0, lease.remaining() - self._lease_seconds / 2))
            if lease.remaining() <= 0:
                return
            try:
                granted = await self._backend.extend_lease(action.action_id, req)
            except BackendError as exc:
                if exc.status == 409:
                    log.warning("lease lost; no further writes for this attempt",
                                extra={"action_id": action.action_id, "worker_id": self.worker_id})
                    self._hooks.lease_extended("lost")
                    lease.deadline = min(lease.deadline, time.monotonic())
                    return
                if exc.status in (404, 405):
                    self._hooks.lease_extended("unsupported")
                    return
                self._hooks.lease_extended("error")
                await asyncio.sleep(1.0)
                continue
            except _TRANSIENT:
                self._hooks.lease_extended("error")
                await asyncio.sleep(1.0)
                continue
            left = (granted.lease_expires_at - datetime.now(UTC)).total_seconds()
            lease.deadline = max(lease.deadline, time.monotonic() + left)
            self._hooks.lease_extended("extended")

    async def stop(self, grace: float) -> None:
        """Stop claiming; give in-flight actions `grace` seconds, then hand the rest back."""
        self._stopping.set()
        # A claim already on its way may still land and start actions: wait for the loop to
        # exit before deciding what is in flight, or those leases would be orphaned.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=self._wait_seconds + 10)
        tasks = list(self._in_flight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                # Cancelling makes _handle report RETRYABLE with no delay: another worker takes it now.
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
        await self._reporter.drain(timeout=10)  # results submitted but not yet delivered
