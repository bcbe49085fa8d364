"""Garbage-collector settings for the long-running services (`GC_GEN0_THRESHOLD`).

Measured in the receiver under bench.ingest (docs/benchmarks.md, webhook ingest): with CPython's
default thresholds (700, 10, 10) a webhook's parsed JSON tree — about 1,500 objects, alive while the
delivery is handled — sets off young collections that walk it, and every full collection walks all
that start-up built (aiohttp, pydantic, the settings, the pools): 7 % of the receiver's CPU at
800 deliveries/s, and pauses of up to 59 ms, each of which every delivery then in flight waits out.
Nothing of ours creates reference cycles in bulk once running (the trees are freed by reference
counting), so: freeze what start-up built, so no collection walks it again, and collect the young
generation every `threshold` net allocations instead of 700.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def tune(threshold: int) -> None:
    """Freeze the objects alive now and raise the young-generation threshold; 0 leaves CPython's defaults."""
    if threshold <= 0:
        return
    gc.collect()  # what start-up left as garbage goes now, not into the frozen generation
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    log.debug("garbage collector tuned", extra={"frozen": gc.get_freeze_count(), "threshold": threshold})
