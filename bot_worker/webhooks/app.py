"""The webhook receiver (`prgate bot`): application factory, health, readiness, metrics.

One `aiohttp.ClientSession` and one arq Redis pool per app, opened in
`cleanup_ctx`; the metrics registry is the app's own. Nothing is global.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis, RedisSettings, create_pool
from prometheus_client import CollectorRegistry

from bot_worker.backend.client import BackendClient
from bot_worker.jobs import codec as jobcodec
from bot_worker.jobs.codec import JobCodec
from bot_worker.metrics import Metrics, render
from bot_worker.providers.bitbucket.webhook import WEBHOOK_PATH_PREFIX as BITBUCKET_PATH_PREFIX
from bot_worker.providers.bitbucket.webhook import WEBHOOK_ROUTE as BITBUCKET_ROUTE
from bot_worker.providers.github.auth import InstallationTokens
from bot_worker.providers.github.client import GitHubProvider
from bot_worker.providers.github.webhook import MAX_BODY_BYTES, WEBHOOK_PATH
from bot_worker.settings import BotSettings
from bot_worker.webhooks.answers import json_error
from bot_worker.webhooks.bitbucket import BitbucketWebhooks
from bot_worker.webhooks.forward import ENQUEUE_TIMEOUT_SECONDS, FORWARDER, Forwarder
from bot_worker.webhooks.github import GitHubWebhooks
from bot_worker.webhooks.intake import BodyBudget, answer_and_close
from shared_contracts.http_body import body_deadline_passed
from shared_contracts.keys import Caller
from shared_contracts.owner import Health

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", BotSettings)
REDIS_SETTINGS = web.AppKey("redis_settings", RedisSettings)
METRICS = web.AppKey("metrics", Metrics)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
QUEUE = web.AppKey("queue", ArqRedis)
# None when no GitHub App credentials are configured: `/prgate` commands are then ignored.
GITHUB: web.AppKey[GitHubProvider | None] = web.AppKey("github")

READY_TIMEOUT_SECONDS = 2.0
_REASONS = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as an ErrorBody JSON; bad input never becomes a 500.

    It also reads the body first: a client that stops sending mid-body for BODY_READ_TIMEOUT_SECONDS
    (slow loris) gets a 408 and loses its connection instead of holding it forever. Not on the webhook
    routes: those check the headers before reading a byte, and read under a bound (intake.py).
    """
    webhook = request.path == WEBHOOK_PATH or request.path.startswith(BITBUCKET_PATH_PREFIX)
    try:
        if not webhook and await body_deadline_passed(
            request, request.app[SETTINGS].body_read_timeout_seconds
        ):
            return await _cut_off(request)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 413 else f"request body exceeds {MAX_BODY_BYTES} bytes"
        return json_error(exc.status, _REASONS.get(exc.status, "http_error"), message)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return json_error(500, "internal_error", "internal server error")


async def _cut_off(request: web.Request) -> web.StreamResponse:
    """Answer 408 and close now; aiohttp would otherwise linger up to 10 s draining the body."""
    response = json_error(408, "request_timeout", "the request body did not arrive in time")
    return await answer_and_close(request, response)


async def open_queue(settings: RedisSettings, queue_name: str) -> ArqRedis:
    """An arq pool that connects on first use, so the receiver starts (and forwards) while Redis is down.

    `arq.create_pool` pings at once and retries for seconds; here a Redis outage
    only matters when a delivery actually has to be queued (then: 503).
    """
    if settings.sentinel:
        return await create_pool(settings, default_queue_name=queue_name,
                                 job_serializer=jobcodec.serialize, job_deserializer=JobCodec().deserialize)
    return ArqRedis(
        host=settings.host,
        port=settings.port,
        unix_socket_path=settings.unix_socket_path,
        db=settings.database,
        username=settings.username,
        password=settings.password,
        ssl=settings.ssl,
        ssl_keyfile=settings.ssl_keyfile,
        ssl_certfile=settings.ssl_certfile,
        ssl_cert_reqs=settings.ssl_cert_reqs,
        ssl_ca_certs=settings.ssl_ca_certs,
        ssl_ca_data=settings.ssl_ca_data,
        ssl_check_hostname=settings.ssl_check_hostname,
        socket_connect_timeout=settings.conn_timeout,
        socket_timeout=ENQUEUE_TIMEOUT_SECONDS,
        retry=settings.retry,
        retry_on_timeout=settings.retry_on_timeout,
        retry_on_error=settings.retry_on_error,
        max_connections=settings.max_connections,
        encoding="utf8",
        default_queue_name=queue_name,
        # JSON jobs, never pickle (bot_worker/jobs/codec.py): the worker refuses anything else.
        job_serializer=jobcodec.serialize,
        job_deserializer=JobCodec().deserialize,
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = aiohttp.ClientSession()
    try:
        queue = await open_queue(app[REDIS_SETTINGS], settings.queue_name)
    except BaseException:
        await session.close()
        raise
    app[HTTP_SESSION] = session
    app[QUEUE] = queue
    app[GITHUB] = None
    if settings.github_app_id and settings.private_key_pem():
        tokens = InstallationTokens(session, settings.github_api_url, settings.github_app_id,
                                    settings.private_key_pem(), on_refresh=app[METRICS].token_refreshes.inc)
        app[GITHUB] = GitHubProvider(session, settings.github_api_url, tokens)
    app[FORWARDER] = Forwarder(
        BackendClient(session, settings.backend_url, settings.signing_key(Caller.RECEIVER)),
        queue,
        queue_name=settings.queue_name,
        timeout=settings.forward_timeout_seconds,
        metrics=app[METRICS],
        group_max=settings.forward_group_max,
        group_lanes=settings.forward_group_lanes,
    )
    try:
        yield
    finally:
        await app[FORWARDER].aclose()
        await queue.aclose(close_connection_pool=True)
        await session.close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(Health(status="ok").model_dump())


async def _check_redis(queue: ArqRedis) -> str:
    try:
        await asyncio.wait_for(queue.ping(), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def _check_backend(session: aiohttp.ClientSession, backend_url: str) -> str:
    try:
        async with session.get(
            backend_url.rstrip("/") + "/healthz", timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT_SECONDS)
        ) as resp:
            return "ok" if resp.status == 200 else f"status {resp.status}"
    except Exception as exc:
        return type(exc).__name__


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers PING and the backend's /healthz answers 200."""
    app = request.app
    redis, backend = await asyncio.gather(
        _check_redis(app[QUEUE]), _check_backend(app[HTTP_SESSION], app[SETTINGS].backend_url)
    )
    checks = {"redis": redis, "backend": backend}
    ok = redis == "ok" and backend == "ok"
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    return web.json_response(health.model_dump(), status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = render(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_receiver_app(settings: BotSettings, *, redis_settings: RedisSettings | None = None) -> web.Application:
    """The receiver app. `redis_settings` defaults to `settings.redis_url`."""
    settings.signing_key(Caller.RECEIVER)  # InsecureSecret (a ValueError): the one line to print
    if redis_settings is None:
        if not settings.redis_url:
            raise ValueError("REDIS_URL must be set: the receiver queues deliveries there while the backend is away")
        redis_settings = RedisSettings.from_dsn(settings.redis_url)
    secrets = settings.webhook_secrets()
    if not secrets:
        log.error("GITHUB_WEBHOOK_SECRET is empty: every webhook will be refused with 401")
    elif len(secrets) > 1:
        log.info("%d webhook secrets accepted (a rotation is under way)", len(secrets))
    masters = settings.bitbucket_masters()
    if not masters:
        log.error("BITBUCKET_WEBHOOK_SECRET is empty: every Bitbucket webhook will be refused with 401")
    elif len(masters) > 1:
        log.info("%d Bitbucket master secrets accepted (a rotation is under way)", len(masters))

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[REDIS_SETTINGS] = redis_settings
    app[METRICS] = Metrics(CollectorRegistry(auto_describe=True), "receiver")
    app.cleanup_ctx.append(_resources)
    # One bound for both providers' bodies: it protects this process's memory, whoever sends.
    budget = BodyBudget(settings.max_concurrent_bodies, settings.max_body_bytes_in_flight)
    webhooks = GitHubWebhooks(
        secrets, app[METRICS], GITHUB, budget=budget, stall_seconds=settings.body_read_timeout_seconds,
    )
    bitbucket = BitbucketWebhooks(masters, app[METRICS], budget=budget,
                                  stall_seconds=settings.body_read_timeout_seconds)
    app.router.add_post(WEBHOOK_PATH, webhooks.handle)
    app.router.add_post(BITBUCKET_ROUTE, bitbucket.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
