"""arq on no-op jobs, for `python -m bench.e2e` (its arq baseline) and `python -m bench.outbox`.

    python -m bench.peers.arq_noop --redis-url URL --queue Q --max-jobs 16 --poll-delay 0.5

The child is one arq `Worker(burst=True)` running a no-op job. It lines up with the others through
Redis: it pushes its pid to `<queue>:bench-ready` and waits for `<queue>:bench-go`, which the
benchmark pushes once for every worker; it prints one `BENCH-RESULT {json}` line when the queue is
empty. The functions above `main` are the benchmark's side of that.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Sequence
from importlib.metadata import version
from typing import Any, cast

from arq.connections import ArqRedis

from bench.harness.stack import Stack, StackProcess

# --- the benchmark's side ---------------------------------------------------------------------------


def arq_version() -> str:
    try:
        return version("arq")
    except Exception:
        return "?"


def default_poll_delay() -> float:
    from arq.worker import Worker

    return float(inspect.signature(Worker.__init__).parameters["poll_delay"].default)


async def enqueue_noops(pool: ArqRedis, queue: str, jobs: int, concurrency: int = 32) -> None:
    """`jobs` no-op jobs on `queue`, `concurrency` `enqueue_job` calls at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def enqueue(i: int) -> None:
        async with sem:
            await pool.enqueue_job("noop", _job_id=f"{queue}:{i}", _queue_name=queue)

    await asyncio.gather(*(enqueue(i) for i in range(jobs)))


def start_workers(
    stack: Stack, name: str, workers: int, redis_url: str, queue: str, max_jobs: int, poll_delay: float,
    env: dict[str, str],
) -> list[StackProcess]:
    return [
        stack.start(f"{name}-{i}", [
            "-m", "bench.peers.arq_noop", "--redis-url", redis_url, "--queue", queue,
            "--max-jobs", str(max_jobs), "--poll-delay", str(poll_delay),
        ], env)
        for i in range(workers)
    ]


async def all_ready(pool: ArqRedis, queue: str, workers: int, timeout: int) -> bool:
    """Wait for every worker's "ready"; False when one did not say it within `timeout` s."""
    for _ in range(workers):
        if await cast(Awaitable[Any], pool.blpop([f"{queue}:bench-ready"], timeout=timeout)) is None:
            return False
    return True


async def go(pool: ArqRedis, queue: str, workers: int) -> None:
    await cast(Awaitable[Any], pool.rpush(f"{queue}:bench-go", *(["go"] * workers)))


async def delete_queue(pool: ArqRedis, queue: str) -> None:
    """Every key of this run's queue (only those: the Redis may be shared)."""
    async for key in pool.scan_iter(match=f"*{queue}*", count=1000):
        await pool.delete(key)


# --- the child --------------------------------------------------------------------------------------


async def noop(ctx: dict[str, Any]) -> None:
    """The arq baseline's job: does nothing."""
    return None


async def _arq_noop_worker(args: argparse.Namespace) -> dict[str, Any]:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func
    from redis.asyncio import Redis

    settings = RedisSettings.from_dsn(args.redis_url)
    worker = Worker(
        functions=[func(noop, name="noop")], redis_settings=settings, queue_name=args.queue, burst=True,
        max_jobs=args.max_jobs, poll_delay=args.poll_delay, handle_signals=False,
    )
    async with Redis.from_url(args.redis_url) as redis:
        # Line up with the other replicas: say "ready", wait for "go".
        await redis.rpush(f"{args.queue}:bench-ready", str(os.getpid()))
        await redis.blpop([f"{args.queue}:bench-go"], timeout=60)
    cpu0 = time.process_time()
    started = time.time()
    await worker.main()
    finished = time.time()
    cpu = time.process_time() - cpu0
    complete = worker.jobs_complete
    failed = worker.jobs_failed
    await worker.close()
    return {"pid": os.getpid(), "started": started, "finished": finished, "jobs_complete": complete,
            "jobs_failed": failed, "cpu_seconds": cpu}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.arq_noop")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--poll-delay", type=float, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(_arq_noop_worker(args))
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
