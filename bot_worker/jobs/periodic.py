"""Run a job every so often inside a worker process, until the worker stops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(name: str, interval: float, stop: asyncio.Event, run: Callable[[], Awaitable[object]]) -> None:
    """`run` every `interval` seconds until `stop` is set. The first run comes after a jittered
    half-to-whole interval, so replicas started together do not all try at once (each job takes its
    own lock anyway); a failed run is logged and the next one comes on schedule."""
    delay = interval * (0.5 + random.random() / 2)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        try:
            await run()
        except Exception:
            log.exception("%s run failed", name)
        delay = interval
