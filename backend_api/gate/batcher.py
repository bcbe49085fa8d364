"""pull_request deliveries that arrive together are written together, in one transaction.

Under load the ingest path is bound by round trips to PostgreSQL, not by what it decides
(docs/benchmarks.md, webhook ingest): a delivery's transaction is six round trips whether it holds
one delivery or fifty. Deliveries that arrive while earlier ones are being written wait and go in
the next batch, like the nonces of `NonceLedger`; there is no timer, so a lone delivery on an idle
backend is written at once. Each answer is still given only after its batch has committed.

A batch holds one delivery per delivery id and per pull request (`ingest_pull_requests` requires
it), and no lane takes a PR another lane is writing: a second event for a PR waits for the next
batch, so events about one PR are written in their arrival order. At most `lanes` batches are in
flight (each holds a pooled connection).
A batch that fails — a deadlock with another backend, a constraint, a bug — is retried one delivery
per transaction, so one bad delivery fails alone, as it would have without batching.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from shared_contracts.actions import ActionType
from shared_contracts.events import IngestResponse, PullRequestEvent

log = logging.getLogger(__name__)

Ingested = tuple[IngestResponse, list[ActionType]]
Ingest = Callable[[Sequence[PullRequestEvent]], Awaitable[list[Ingested]]]
_Waiting = tuple[PullRequestEvent, "asyncio.Future[Ingested]"]


class IngestBatcher:
    def __init__(
        self,
        ingest: Ingest,
        *,
        max_batch: int,
        lanes: int,
        on_batch: Callable[[int], object] = lambda size: None,
        on_fallback: Callable[[], object] = lambda: None,
    ) -> None:
        """`on_batch(size)` is called for each batch written, `on_fallback()` for each that failed (metrics)."""
        if max_batch < 1 or lanes < 1:
            raise ValueError("max_batch and lanes must be at least 1")
        self._ingest = ingest
        self._on_batch = on_batch
        self._on_fallback = on_fallback
        self._max_batch = max_batch
        self._lanes = lanes
        self._waiting: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight: set[tuple[int, int]] = set()  # PRs of the batches being written

    async def submit(self, event: PullRequestEvent) -> Ingested:
        """Ingest one delivery; returns once the batch it went in has committed."""
        # Shielded: a client that hangs up does not cancel what its batch neighbours wait for.
        return await asyncio.shield(self._enqueue(event))

    async def submit_many(self, events: Sequence[PullRequestEvent]) -> list[Ingested | Exception]:
        """Ingest several deliveries, queued in their order; each answer, or the exception that kept
        that delivery from being written, once all of them are settled."""
        futures = [self._enqueue(event) for event in events]
        settled = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        return [_not_base(item) for item in settled]

    def _enqueue(self, event: PullRequestEvent) -> asyncio.Future[Ingested]:
        future: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if len(self._running) < self._lanes:
            lane = asyncio.create_task(self._lane())
            self._running.add(lane)
            lane.add_done_callback(self._running.discard)
        return future

    async def aclose(self) -> None:
        """Wait for the batches in flight (and those waiting) to be written."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _take(self) -> list[_Waiting]:
        """The next batch, in arrival order; what cannot go in it stays waiting, in order."""
        batch: list[_Waiting] = []
        later: deque[_Waiting] = deque()
        ids: set[str] = set()
        prs: set[tuple[int, int]] = set()
        while self._waiting and len(batch) < self._max_batch:
            item = self._waiting.popleft()
            event = item[0]
            pr = (event.repository.id, event.pull_request.number)
            if event.delivery_id in ids or pr in prs or pr in self._in_flight:
                later.append(item)
                continue
            ids.add(event.delivery_id)
            prs.add(pr)
            batch.append(item)
        later.extend(self._waiting)
        self._waiting = later
        return batch

    async def _lane(self) -> None:
        while self._waiting:
            batch = self._take()
            if not batch:
                return  # all that waits is about PRs another lane is writing: that lane takes it next
            prs = {(event.repository.id, event.pull_request.number) for event, _ in batch}
            self._in_flight |= prs
            try:
                await self._run(batch)
            finally:
                self._in_flight -= prs

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            answers = await self._ingest([event for event, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            self._on_fallback()
            log.warning("a batch of %d deliveries failed (%s): writing them one by one", len(batch), exc)
            for item in batch:
                await self._run([item])
            return
        self._on_batch(len(batch))
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


def _not_base(item: Ingested | BaseException) -> Ingested | Exception:
    """Only an `Exception` settles a delivery (`_settle`); anything else here is a bug to raise."""
    if isinstance(item, BaseException) and not isinstance(item, Exception):
        raise item
    return item


def _settle(future: asyncio.Future[Ingested], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved here too: a request that hung up never awaits it
