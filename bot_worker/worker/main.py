"""`prgate worker`: one replica = the outbox claim loop + an arq worker for queued jobs.

arq runs the durable jobs (deliveries the receiver parked while the backend was
unreachable, and later the periodic jobs); the claim loop leases outbox
actions from the backend. Both stop in order on SIGTERM/SIGINT.

The status server (`WORKER_METRICS_PORT`) answers `/metrics`, `/healthz` (liveness: the process
runs) and `/readyz` (readiness: the claim loop reaches the backend and Redis answers PING).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import aiohttp
from aiohttp import web
from arq.connections import RedisSettings
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bot_worker.backend.client import BackendClient
from bot_worker.jobs import bitbucket_discovery, config_refresh, redelivery
from bot_worker.jobs import reconcile as reconcile_job
from bot_worker.jobs.context import ConfigRefreshContext, DiscoveryContext, JobContext, RedeliveryContext
from bot_worker.jobs.forward import forward_worker
from bot_worker.jobs.periodic import every
from bot_worker.metrics import Metrics, render
from bot_worker.providers.base import Classified
from bot_worker.providers.bitbucket.runner import BitbucketRunner
from bot_worker.providers.bitbucket.tokens import WorkspaceTokens
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.registry import ProviderRegistry
from bot_worker.settings import BotSettings
from bot_worker.worker.claim_loop import ClaimLoop, LoopHooks
from bot_worker.worker.executor import Executor
from bot_worker.worker.throttle import WriteThrottle
from shared_contracts.actions import ClaimedAction, ClaimRequest, ClaimResponse
from shared_contracts.keys import Caller, InsecureSecret
from shared_contracts.owner import Health

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0


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

    def lease_extended(self, outcome: str) -> None:
        self._m.lease_extensions.labels(outcome).inc()


class ClaimHealth:
    """What `/readyz` knows about the claim calls: how many are in flight and how the last one ended.

    Ready (`check() == "ok"`) when no claim has failed since the last success, and a claim is in
    flight, or every slot is busy (the loop is not claiming because it has no room), or the last
    claim succeeded within `stale_after` seconds. A claim cancelled at shutdown changes nothing.
    """

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after = stale_after
        self._clock = clock
        self._in_flight = 0
        self._last_ok: float | None = None
        self._failing = False

    def started(self) -> None:
        self._in_flight += 1

    def finished(self, ok: bool | None) -> None:
        """`ok` None: the call was cancelled, neither a success nor a failure."""
        self._in_flight -= 1
        if ok is None:
            return
        self._failing = not ok
        if ok:
            self._last_ok = self._clock()

    def check(self, *, saturated: bool) -> str:
        if self._failing:
            return "last claim failed"
        if self._in_flight or (saturated and self._last_ok is not None):
            return "ok"
        if self._last_ok is not None and self._clock() - self._last_ok <= self._stale_after:
            return "ok"
        return "no recent claim"


class TrackedBackendClient(BackendClient):
    """The backend client whose claim calls report to a `ClaimHealth`."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, secret: str, health: ClaimHealth) -> None:
        super().__init__(session, base_url, secret)
        self._health = health

    async def claim(self, req: ClaimRequest) -> ClaimResponse:
        self._health.started()
        ok: bool | None = False
        try:
            response = await super().claim(req)
            ok = True
            return response
        except asyncio.CancelledError:
            ok = None
            raise
        finally:
            self._health.finished(ok)


async def _ping(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


def lease_problem(lease_seconds: float, provider_timeout: float, report_margin: float) -> str | None:
    """Why these settings would stall writes, or None. The lease is extended at its half, so half a
    lease must hold one write's worst case (the provider timeout) plus the report margin."""
    need = 2 * (provider_timeout + report_margin)
    if lease_seconds < need:
        return (f"WORKER_LEASE_SECONDS ({lease_seconds:g}) must be at least 2 x (PROVIDER_TIMEOUT_SECONDS "
                f"+ WORKER_REPORT_MARGIN_SECONDS) = {need:g}: otherwise a write could outlive the lease")
    return None


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def _status_server(
    settings: BotSettings, metrics: Metrics, loop: ClaimLoop, health: ClaimHealth, redis: Redis, stop: asyncio.Event
) -> AsyncIterator[int]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker_id": loop.worker_id, "in_flight": loop.in_flight})

    async def readyz(_: web.Request) -> web.Response:
        claim = "stopping" if stop.is_set() else health.check(saturated=loop.in_flight >= settings.worker_concurrency)
        checks = {"claim": claim, "redis": await _ping(redis)}
        ok = all(v == "ok" for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return web.json_response(body.model_dump(), status=200 if ok else 503)

    async def metrics_handler(_: web.Request) -> web.Response:
        body, content_type = render(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
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
    try:
        signing_key = settings.signing_key(Caller.WORKER)
    except InsecureSecret as exc:
        raise SystemExit(str(exc)) from None
    if not settings.github_app_id or not settings.private_key_pem():
        raise SystemExit("GITHUB_APP_ID and GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH) are required")
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is required")
    problem = lease_problem(settings.lease_seconds, settings.provider_timeout_seconds, settings.report_margin_seconds)
    if problem:
        raise SystemExit(problem)
    stop = stop or asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)

    worker_id = settings.worker_id or default_worker_id()
    metrics = Metrics(CollectorRegistry(), "worker")
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout_seconds)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        Redis.from_url(settings.redis_url) as redis,
    ):
        # A claim lasts at most its long-poll wait plus the client's margin; "recent" allows one more.
        health = ClaimHealth(stale_after=2 * (settings.claim_wait_seconds + 15))
        backend = TrackedBackendClient(session, settings.backend_url, signing_key, health)
        tokens = InstallationTokens(
            session, settings.github_api_url, settings.github_app_id, settings.private_key_pem(),
            on_refresh=metrics.token_refreshes.inc,
        )

        def observe(method: str, status: int, seconds: float) -> None:
            metrics.provider_request_seconds.labels("github", method, str(status)).observe(seconds)

        def observe_bitbucket(method: str, status: int, seconds: float) -> None:
            metrics.provider_request_seconds.labels("bitbucket", method, str(status)).observe(seconds)

        executor = Executor(
            ProviderRegistry([
                GitHubProvider(session, settings.github_api_url, tokens, observe,
                               on_foreign_comment=metrics.foreign_comments.inc,
                               on_stored_comment_lost=metrics.stored_comments_lost.inc,
                               on_foreign_link=metrics.foreign_next_links.labels("executor").inc),
                BitbucketRunner(session, settings.bitbucket_api_url,
                                WorkspaceTokens(backend.bitbucket_token, on_fetch=metrics.token_refreshes.inc),
                                observe_bitbucket, on_foreign_comment=metrics.foreign_comments.inc,
                                on_stored_comment_lost=metrics.stored_comments_lost.inc),
            ]),
            WriteThrottle(redis, settings.writes_per_minute),
            provider_timeout=settings.provider_timeout_seconds, report_margin=settings.report_margin_seconds,
            on_throttle_wait=metrics.rate_limit_waits.labels("throttle").inc,
        )
        loop = ClaimLoop(
            backend, executor, worker_id=worker_id, concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds, wait_seconds=settings.claim_wait_seconds,
            hooks=MetricsHooks(metrics),
        )
        ctx = JobContext(
            backend=backend, metrics=metrics,
            redelivery=RedeliveryContext(
                session, redis, tokens, settings.github_api_url, key_prefix=settings.queue_name,
                lookback=timedelta(hours=settings.redelivery_lookback_hours),
            ),
            reconcile=reconcile_job.build_context(
                settings, session, redis, tokens, worker_id=worker_id, metrics=metrics,
            ),
            bitbucket_discovery=DiscoveryContext(redis, settings.queue_name),
            config_refresh=ConfigRefreshContext(redis, settings.queue_name, batch_size=settings.config_refresh_batch),
        ).arq_ctx()
        jobs = forward_worker(
            RedisSettings.from_dsn(settings.redis_url), settings.queue_name, ctx, metrics,
            max_jobs=settings.worker_concurrency,
        )
        async with _status_server(settings, metrics, loop, health, redis, stop) as port:
            log.info("worker started", extra={"worker_id": worker_id, "path": f"metrics on :{port}"})
            claim_task = asyncio.create_task(loop.run())
            jobs_task = asyncio.create_task(jobs.async_run())
            periodic = [
                asyncio.create_task(every(name, interval, stop, functools.partial(run, ctx)))
                for name, run, interval in (
                    ("redelivery", redelivery.redeliver_failed, settings.redelivery_interval_seconds),
                    ("reconcile", reconcile_job.scheduled, settings.reconcile_interval_seconds),
                    ("bitbucket-discovery", bitbucket_discovery.scheduled,
                     settings.bitbucket_discovery_interval_seconds),
                    ("config-refresh", config_refresh.scheduled, settings.config_refresh_interval_seconds),
                )
                if interval > 0  # 0 disables a job
            ]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({claim_task, jobs_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                if task.exception() is not None:
                    log.error("worker component died", exc_info=task.exception())
            log.info("worker stopping", extra={"worker_id": worker_id})
            await loop.stop(settings.shutdown_grace_seconds)
            claim_task.cancel()
            jobs_task.cancel()
            for task in periodic:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await claim_task
            with contextlib.suppress(asyncio.CancelledError):
                await jobs_task
            await jobs.close()
            stopper.cancel()
    log.info("worker stopped", extra={"worker_id": worker_id})
