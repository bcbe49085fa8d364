"""Child processes the benchmarks start: the simulator with precise timestamps, and no-op workers.

Every child lines up with the others the same way: it does all its start-up work (imports,
connections), writes its ready file, then waits for SIGUSR1 from the benchmark, which sends it to
every worker at once and starts the clock. Children never stop by themselves: the benchmark
watches the queue, reads their CPU time from /proc and ends them with SIGTERM (and they get
SIGKILL through PR_SET_PDEATHSIG if the benchmark dies; see bench/stack.py).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path


async def ready_then_go(ready_file: Path) -> None:
    """Say "ready" (an empty file), then wait for SIGUSR1."""
    go = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
    await asyncio.to_thread(ready_file.write_text, "")
    await go.wait()
