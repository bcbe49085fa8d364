"""Run every benchmark in `bench/`, passing the same flags to each (e.g. `--quick`, `--write-docs`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import claim, contention, e2e, ingest, outbox

BENCHMARKS: tuple[tuple[str, Callable[[list[str] | None], int]], ...] = (
    ("claim", claim.main),
    ("contention", contention.main),
    ("e2e", e2e.main),
    ("ingest", ingest.main),
    ("outbox", outbox.main),
)


def main(argv: list[str] | None = None) -> int:
    worst = 0
    for name, run in BENCHMARKS:
        print(f"== bench.{name} ==", flush=True)
        worst = max(worst, run(argv))
    return worst


if __name__ == "__main__":
    sys.exit(main())
