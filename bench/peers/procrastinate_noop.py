"""procrastinate on no-op jobs for `python -m bench.outbox`: the app (shared with the benchmark) and one worker.

    python -m bench.peers.procrastinate_noop --conninfo URL --concurrency 16 --ready-file PATH

The worker is `App.run_worker_async(concurrency=...)` with procrastinate's defaults otherwise:
its default psycopg 3 connector (`PsycopgConnector`, a psycopg_pool of 4 connections, one of
them held by LISTEN/NOTIFY), `wait=True`, jobs kept after they finish (`delete_jobs="never"`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import procrastinate

from bench.peers import ready_then_go

TASK_NAME = "noop"


async def noop() -> None:
    """The job: does nothing."""
    return None


def make_app(conninfo: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    app.task(name=TASK_NAME)(noop)
    return app


async def serve(args: argparse.Namespace) -> None:
    app = make_app(args.conninfo)
    async with app.open_async():  # opens the pool and waits for its connections
        await ready_then_go(Path(args.ready_file))
        await app.run_worker_async(concurrency=args.concurrency, install_signal_handlers=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.procrastinate_noop")
    parser.add_argument("--conninfo", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--ready-file", required=True)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
