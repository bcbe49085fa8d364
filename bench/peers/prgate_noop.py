"""One prgate worker for `python -m bench.outbox`: the real ClaimLoop and BackendClient, a no-op executor.

    python -m bench.peers.prgate_noop --backend-url URL --secret S --worker-id ID \
        --concurrency 16 --lease-seconds 60 --wait-seconds 20 --ready-file PATH

Everything the production worker does on the outbox path (`bot_worker.worker.main.run_worker`)
is here: an aiohttp session with the provider timeout, the signed `BackendClient`, and
`ClaimLoop` with the given concurrency, lease and long-poll wait. What it leaves out: the GitHub
provider and write throttle (the executor answers SUCCEEDED at once), Prometheus hooks, the arq
job worker and the status server. Logging stays at Python's default (WARNING), as the other
systems' workers in the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.peers import ready_then_go
from bot_worker.backend.client import BackendClient
from bot_worker.providers.base import Classified
from bot_worker.settings import BotSettings
from bot_worker.worker.claim_loop import ClaimLoop
from bot_worker.worker.executor import Executor, Lease
from shared_contracts.actions import ClaimedAction, Outcome

_SUCCEEDED = Classified(Outcome.SUCCEEDED, None)


class NoopExecutor(Executor):
    """`Executor.run`'s contract with nothing behind it: every action succeeds at once."""

    def __init__(self) -> None:  # no provider, no throttle
        pass

    async def run(self, action: ClaimedAction, lease: float | Lease) -> Classified:
        return _SUCCEEDED


async def serve(args: argparse.Namespace) -> None:
    timeout_default = BotSettings.model_fields["provider_timeout_seconds"].default
    timeout = aiohttp.ClientTimeout(total=timeout_default)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # Open a keep-alive connection before the clock starts.
        async with session.get(args.backend_url.rstrip("/") + "/healthz") as resp:
            await resp.read()
        loop = ClaimLoop(
            BackendClient(session, args.backend_url, args.secret), NoopExecutor(), worker_id=args.worker_id,
            concurrency=args.concurrency, lease_seconds=args.lease_seconds, wait_seconds=args.wait_seconds,
        )
        await ready_then_go(Path(args.ready_file))
        await loop.run()  # until SIGTERM ends the process


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.prgate_noop")
    parser.add_argument("--backend-url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--lease-seconds", type=int, required=True)
    parser.add_argument("--wait-seconds", type=float, required=True)
    parser.add_argument("--ready-file", required=True)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
