"""Forward `pull_request` deliveries that arrive together in one backend call.

Per delivery, the signed HTTP hop to the backend costs about as much as everything else the
receiver and the backend's HTTP layer do for it (docs/benchmarks.md, webhook ingest). Deliveries
that arrive while a call is in flight wait and go together in the next one, as worker results do
(`bot_worker/worker/reporter.py`); there is no timer, so a lone delivery is sent at once. At most
`lanes` calls are in flight. The backend answers each delivery on its own, in order
(`POST /internal/v2/github/events/pull-requests`, docs/contract.md).

What each delivery gets back is what the single call would have given it: its IngestResponse, a
refusal (a 4xx for that delivery), or "unavailable" — then the caller queues it for the worker to
replay, as after a timeout of the single call. A 4xx for the call as a whole sends its deliveries
one by one, so each gets its own verdict; a backend without the group route (an older version
during a rolling deploy answers 404/405) is sent one delivery per call from then on. Each delivery
keeps the single call's timeout from its own arrival, however long it waits for a lane.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from bot_worker.backend.client import BackendClient, BackendError
from shared_contracts.events import PULL_REQUEST_EVENTS_MAX, IngestBatchItem, IngestResponse, PullRequestEvent

log = logging.getLogger(__name__)

# The backend refuses bodies over 1 MiB; one event is at most ~40 KiB (a 4,096-character title escaped).
MAX_GROUP_BYTES: Final = 512 * 1024


@dataclass(frozen=True)
class Unreachable:
    """The backend did not answer for this delivery; it should be queued and sent again."""

    cause: str


Sent = IngestResponse | BackendError | Unreachable
SendOne = Callable[[PullRequestEvent], Awaitable[Sent]]
_Waiting = tuple[PullRequestEvent, bytes, "asyncio.Future[Sent]"]


class GroupSender:
    def __init__(
        self,
        backend: BackendClient,
        send_one: SendOne,
        *,
        timeout: float,
        max_events: int,
        lanes: int,
        unavailable: tuple[type[BaseException], ...],
        on_group: Callable[[int], object] = lambda size: None,
    ) -> None:
        """`send_one` is the single call (for the fallbacks); `unavailable` the exceptions that mean the
        backend did not answer; `on_group(size)` is called for each group call answered (metrics)."""
        if not 1 <= max_events <= PULL_REQUEST_EVENTS_MAX or lanes < 1:
            raise ValueError(f"max_events must be 1..{PULL_REQUEST_EVENTS_MAX} and lanes at least 1")
        self._backend = backend
        self._send_one = send_one
        self._timeout = timeout
        self._max_events = max_events
        self._lanes = lanes
        self._unavailable = unavailable
        self._on_group = on_group
        self._waiting: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._group_route = True

    async def send(self, event: PullRequestEvent) -> Sent:
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, event.model_dump_json().encode(), future))
        if len(self._running) < self._lanes:
            lane = asyncio.create_task(self._lane())
            self._running.add(lane)
            lane.add_done_callback(self._running.discard)
        # Each delivery keeps the single call's budget however long it waits for a lane: behind a hung
        # backend, waiting deliveries are given up (and queued by the caller) after `timeout`, not one
        # group call after another. Given up while waiting: never sent; while in flight: its answer is
        # dropped (the replay from the queue is then answered DUPLICATE).
        deadline = asyncio.get_running_loop().call_later(self._timeout, _give_up, future)
        try:
            # Shielded: GitHub hanging up on one delivery does not cancel its neighbours' call.
            return await asyncio.shield(future)
        finally:
            deadline.cancel()

    async def aclose(self) -> None:
        """Wait for the calls in flight (and the deliveries waiting) to be answered."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _take(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        size = 0
        while self._waiting and len(group) < self._max_events:
            if self._waiting[0][2].done():  # given up on while it waited
                self._waiting.popleft()
                continue
            body = self._waiting[0][1]
            if group and size + len(body) + 1 > MAX_GROUP_BYTES:
                break
            group.append(self._waiting.popleft())
            size += len(body) + 1
        return group

    async def _lane(self) -> None:
        while self._waiting:
            group = self._take()
            if not group:
                return
            try:
                answers = await self._send(group)
            except Exception as exc:  # a bug: fail these deliveries (GitHub sees a 500), keep the lane alive
                log.exception("forwarding a group failed")
                answers = [Unreachable(type(exc).__name__)] * len(group)
            for (_, _, future), answer in zip(group, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    async def _send(self, group: list[_Waiting]) -> list[Sent]:
        if not self._group_route or len(group) == 1:
            return await self._one_by_one(group)
        try:
            answer = await self._backend.ingest_pull_requests([body for _, body, _ in group], self._timeout)
        except BackendError as exc:
            if exc.status in (404, 405):
                log.warning("backend has no group ingest route; forwarding one delivery per call")
                self._group_route = False
                return await self._one_by_one(group)
            if exc.retryable:
                return [exc] * len(group)
            log.warning("backend refused a group of %d deliveries (%d): sending them one by one", len(group),
                        exc.status)
            return await self._one_by_one(group)
        except self._unavailable as exc:
            return [Unreachable(type(exc).__name__)] * len(group)
        if len(answer.results) != len(group):
            log.error("backend answered %d items for %d deliveries", len(answer.results), len(group))
            return [Unreachable("malformed group answer")] * len(group)
        self._on_group(len(group))
        return [_item(event, item) for (event, _, _), item in zip(group, answer.results, strict=True)]

    async def _one_by_one(self, group: list[_Waiting]) -> list[Sent]:
        return list(await asyncio.gather(*(self._send_one(event) for event, _, _ in group)))


def _give_up(future: asyncio.Future[Sent]) -> None:
    if not future.done():
        future.set_result(Unreachable("TimeoutError"))


def _item(event: PullRequestEvent, item: IngestBatchItem) -> Sent:
    if item.response is not None and item.response.delivery_id == event.delivery_id:
        return item.response
    cause = item.error.error if item.error is not None else "answer for another delivery"
    return Unreachable(f"backend: {cause}")
