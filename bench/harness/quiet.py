"""A shared machine: wait until it is idle before measuring, and measure again what other load disturbed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.harness.cpu import machine_stat

T = TypeVar("T")

# Cores other processes may take before a measurement counts as disturbed, unless a benchmark says otherwise.
QUIET_LOAD = 0.25


@dataclass(frozen=True, slots=True)
class Quiet:
    """How busy the machine was (in cores) when the wait ended, and whether it ended quiet."""

    busy: float
    quiet: bool
    limit: float

    def describe(self) -> str:
        if self.quiet:
            return f"machine quiet ({100 * self.busy:.0f}% of a core busy) at start"
        return f"(!) machine still busy at start ({100 * self.busy:.0f}% of a core) after waiting {self.limit:g} s"


def _busy_cores(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    d_total = after[1] - before[1]
    return (os.cpu_count() or 1) * (after[0] - before[0]) / d_total if d_total > 0 else 0.0


async def wait_quiet(limit: float, tag: str, threshold: float = QUIET_LOAD, window: float = 2.0) -> Quiet:
    """Wait (up to `limit` s) until the whole machine is busy at most `threshold` of a core over `window` s."""
    deadline = time.monotonic() + limit
    said = 0.0
    while True:
        before = machine_stat()
        await asyncio.sleep(window)
        busy = _busy_cores(before, machine_stat())
        if busy <= threshold:
            return Quiet(busy, True, limit)
        if time.monotonic() >= deadline:
            return Quiet(busy, False, limit)
        if time.monotonic() - said > 30:
            said = time.monotonic()
            print(f"{tag}: machine busy ({100 * busy:.0f}% of a core); waiting for it to quiet down", flush=True)


def wait_quiet_before_start(limit: float, tag: str, threshold: float = QUIET_LOAD) -> Quiet:
    """`wait_quiet` before a benchmark's event loop starts, saying what it found."""
    found = asyncio.run(wait_quiet(limit, tag, threshold))
    print(f"{tag}: machine busy {found.busy:.0%} of a core before starting", flush=True)
    return found


async def least_disturbed(
    measure: Callable[[], Awaitable[T]], *, retries: int, rank: Callable[[T], Any], good: Callable[[T], bool],
    show: Callable[[T, int], None],
) -> T:
    """Measure; while the best run so far is not `good` (other load, errors), measure again, up to
    `retries` times. The best run by `rank` (lowest first) is kept; `show` prints each attempt."""
    best: T | None = None
    for attempt in range(1 + retries):
        result = await measure()
        show(result, attempt)
        if best is None or rank(result) < rank(best):
            best = result
        if good(best):
            break
    assert best is not None
    return best
