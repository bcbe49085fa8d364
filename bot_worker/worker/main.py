"""`prgate worker`: one replica = the outbox claim loop + an arq worker for queued jobs.

arq runs the durable jobs (deliveries the receiver parked while the backend was
unreachable, and later the periodic jobs); the claim loop leases outbox
actions from the backend. Both stop in order on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from arq.connections import RedisSettings
from arq.worker import Worker
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient
from bot_worker.metrics import Metrics, render
from bot_worker.providers.github import GitHubProvider
from bot_worker.providers.github_auth import InstallationTokens
from bot_worker.settings import BotSettings
from bot_worker.webhooks.forward import CTX_BACKEND, CTX_METRICS, FORWARD_JOB
from bot_worker.worker.claim_loop import ClaimLoop, LoopHooks
from bot_worker.worker.executor import Executor
from bot_worker.worker.outcomes import Classified
from bot_worker.worker.throttle import WriteThrottle
from shared_contracts.actions import ClaimedAction

log = logging.getLogger(__name__)


class MetricsHooks(LoopHooks):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def claimed(self, action: ClaimedAction) -> None:
        self._m.actions_claimed.labels(action.action_type.value).inc()

    def executed(self, action: ClaimedAction, result: Classified) -> None:
        self._m.actions_executed.labels(action.action_type.value, result.outcome.value).inc()
        if result.rate_limit:
            self._m.rate_limit_waits.labels(result.rate_limit).inc()

    def claim_failed(self) -> None:
        self._m.claim_errors.inc()

    def claim_latency(self, seconds: float) -> None:
        self._m.claim_latency.observe(seconds)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def _status_server(settings: BotSettings, metrics: Metrics, loop: ClaimLoop) -> AsyncIterator[int]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker_id": loop.worker_id, "in_flight": loop.in_flight})

    async def metrics_handler(_: web.Request) -> web.Response:
        body, content_type = render(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.metrics_port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.metrics_port
    try:
        yield int(port)
    finally:
        await runner.cleanup()


async def run_worker(settings: BotSettings, stop: asyncio.Event | None = None) -> None:
    if not settings.internal_secrets:
        raise SystemExit("PRGATE_INTERNAL_SECRETS must hold at least one secret")
    if not settings.github_app_id or not settings.private_key_pem():
        raise SystemExit("GITHUB_APP_ID and GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH) are required")
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is required")
    stop = stop or asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)

    worker_id = settings.worker_id or default_worker_id()
    metrics = Metrics(CollectorRegistry())
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout_seconds)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        Redis.from_url(settings.redis_url) as redis,
    ):
        backend = BackendClient(session, settings.backend_url, settings.internal_secrets[0])
        tokens = InstallationTokens(
            session, settings.github_api_url, settings.github_app_id, settings.private_key_pem(),
            on_refresh=metrics.token_refreshes.inc,
        )

        def observe(method: str, status: int, seconds: float) -> None:
            metrics.provider_request_seconds.labels("github", method, str(status)).observe(seconds)

        executor = Executor(
            GitHubProvider(session, settings.github_api_url, tokens, observe),
            WriteThrottle(redis, settings.writes_per_minute),
            on_throttle_wait=metrics.rate_limit_waits.labels("throttle").inc,
        )
        loop = ClaimLoop(
            backend, executor, worker_id=worker_id, concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds, wait_seconds=settings.claim_wait_seconds,
            hooks=MetricsHooks(metrics),
        )
        jobs = Worker(
            functions=[FORWARD_JOB], redis_settings=RedisSettings.from_dsn(settings.redis_url),
            queue_name=settings.queue_name, handle_signals=False, ctx={CTX_BACKEND: backend, CTX_METRICS: metrics},
            max_jobs=settings.worker_concurrency,
        )
        async with _status_server(settings, metrics, loop) as port:
            log.info("worker started", extra={"worker_id": worker_id, "path": f"metrics on :{port}"})
            claim_task = asyncio.create_task(loop.run())
            jobs_task = asyncio.create_task(jobs.async_run())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({claim_task, jobs_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                if task.exception() is not None:
                    log.error("worker component died", exc_info=task.exception())
            log.info("worker stopping", extra={"worker_id": worker_id})
            await loop.stop(settings.shutdown_grace_seconds)
            claim_task.cancel()
            jobs_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim_task
            with contextlib.suppress(asyncio.CancelledError):
                await jobs_task
            await jobs.close()
            stopper.cancel()
    log.info("worker stopped", extra={"worker_id": worker_id})
