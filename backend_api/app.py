"""The backend application factory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from backend_api import maintenance
from backend_api.auth.nonces import NonceLedger
from backend_api.auth.scopes import InternalScopes
from backend_api.auth.session import SessionCodec
from backend_api.bitbucket import oauth as bitbucket_oauth
from backend_api.gate.batcher import IngestBatcher
from backend_api.gate.bitbucket import CachedPermissions
from backend_api.gate.bitbucket_config import BitbucketConfigReader
from backend_api.gate.pull_request import ingest_pull_requests
from backend_api.github.app import PERMISSION_TTL_SECONDS, github_app_ctx
from backend_api.http.auth import internal_auth_middleware
from backend_api.http.errors import CLIENT_HANGUPS, MAX_BODY_BYTES, error_middleware
from backend_api.http.routes import add_routes, internal_scopes
from backend_api.keys import (
    BITBUCKET_CONFIG,
    BITBUCKET_OWNER_PERMISSIONS,
    BITBUCKET_PERMISSIONS,
    CLAIM_FLOOR,
    DB_POOL,
    HTTP_CLIENT,
    INGEST,
    NONCES,
    NOTIFIER,
    OWNER_CHECKS,
    RNG,
    SCOPES,
    SESSIONS,
    SETTINGS,
    VAULT,
)
from backend_api.metrics import BACKEND_METRICS, BackendMetrics, metrics_middleware
from backend_api.outbox.floor import ClaimFloor
from backend_api.outbox.notifier import ActionNotifier
from backend_api.owner.access import bare_operator_logins
from backend_api.owner.ratelimit import SlidingWindow
from backend_api.settings import BackendSettings
from backend_api.store import bitbucket as bitbucket_store
from backend_api.store.db import create_pool
from backend_api.web.dashboard import add_dashboard_routes
from backend_api.web.revocation import SESSION_GUARD, SessionGuard
from backend_api.web.routes import add_web_routes
from provider_clients.bitbucket.api import BitbucketClient


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    notifier = app[NOTIFIER]
    await notifier.start(settings.database_url)
    app[DB_POOL] = pool
    app[NONCES] = NonceLedger(pool)
    await _warn_if_bitbucket_sign_in_missing(app)
    app[INGEST] = IngestBatcher(
        functools.partial(ingest_pull_requests, pool, public_url=settings.public_url,
                          max_attempts=settings.action_max_attempts, parking=settings.parking_limits()),
        max_batch=settings.ingest_batch_max, lanes=settings.ingest_lanes,
        on_batch=app[BACKEND_METRICS].ingest_batch_size.observe,
        on_fallback=app[BACKEND_METRICS].ingest_batch_fallbacks.inc,
    )
    sweeper = asyncio.create_task(maintenance.run_forever(
        pool, app[BACKEND_METRICS], settings.sweep_interval_seconds, public_url=settings.public_url,
        max_attempts=settings.action_max_attempts, parked_ttl_seconds=settings.parked_event_ttl_seconds,
    ))
    yield
    await app[INGEST].aclose()
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await notifier.stop()
    await pool.close()


async def _warn_if_bitbucket_sign_in_missing(app: web.Application) -> None:
    """Once at start: Bitbucket authors cannot verify while the OAuth consumer is missing."""
    if bitbucket_oauth.configured(app[SETTINGS]):
        return
    async with app[DB_POOL].acquire() as conn:
        connected = await bitbucket_store.count_active(conn)
    if connected:
        log.warning("%d Bitbucket workspace(s) connected but BITBUCKET_OAUTH_CLIENT_ID/SECRET are not set: their "
                    "authors cannot sign in to verify (docs/verification.md)", connected)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    app[HTTP_CLIENT] = aiohttp.ClientSession()
    yield
    await app[HTTP_CLIENT].close()


# A permission lookup happens inside a webhook's 10 s: Bitbucket gets a few of them.
_PERMISSION_TIMEOUT_SECONDS = 4.0


async def _bitbucket_permissions(app: web.Application) -> AsyncIterator[None]:
    session, api_url = app[HTTP_CLIENT], app[SETTINGS].bitbucket_api_url
    counter = app[BACKEND_METRICS].bitbucket_permissions
    app[BITBUCKET_PERMISSIONS] = CachedPermissions(
        app[DB_POOL], app.get(VAULT),
        lambda token: BitbucketClient(session, api_url, token, timeout_seconds=_PERMISSION_TIMEOUT_SECONDS),
        on_outcome=lambda outcome: counter.labels(outcome).inc(),
    )
    app[BITBUCKET_OWNER_PERMISSIONS] = CachedPermissions(
        app[DB_POOL], app.get(VAULT),
        lambda token: BitbucketClient(session, api_url, token, timeout_seconds=_PERMISSION_TIMEOUT_SECONDS),
        on_outcome=lambda outcome: counter.labels(outcome).inc(), ttl_seconds=PERMISSION_TTL_SECONDS,
    )
    # A push's read happens inside a webhook's 10 s too: the same budget per call.
    app[BITBUCKET_CONFIG] = BitbucketConfigReader(
        app[DB_POOL], app.get(VAULT),
        lambda token: BitbucketClient(session, api_url, token, timeout_seconds=_PERMISSION_TIMEOUT_SECONDS),
    )
    yield

log = logging.getLogger(__name__)


def create_app(settings: BackendSettings, *, rng: random.Random | None = None) -> web.Application:
    settings.check_secrets()  # InsecureSecret (a ValueError): the one line to print
    bare = bare_operator_logins(settings.operators)
    if bare:
        # Still honoured (refusing would lock existing operators out), but a login can be renamed
        # and re-registered by someone else: `login:id` is matched by the id only.
        log.warning("PRGATE_OPERATORS lists bare logins, matched by login: %s; write them as login:id "
                    "(docs/security.md, 'Rights keyed by login, not user id')", ", ".join(bare))
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[metrics_middleware, error_middleware, internal_auth_middleware]
    )
    app[SETTINGS] = settings
    vault = settings.vault()
    if vault is not None:
        app[VAULT] = vault
    app[SCOPES] = InternalScopes(internal_scopes())
    app[BACKEND_METRICS] = BackendMetrics(CollectorRegistry())
    app[CLIENT_HANGUPS] = app[BACKEND_METRICS].client_hangups
    app[NOTIFIER] = ActionNotifier()
    app[CLAIM_FLOOR] = ClaimFloor()
    app[RNG] = rng or random.Random()
    app[SESSIONS] = SessionCodec.from_settings(settings)
    app[OWNER_CHECKS] = SlidingWindow(settings.owner_api_checks_per_minute, 60.0)
    app[SESSION_GUARD] = SessionGuard()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_http_client)
    app.cleanup_ctx.append(_bitbucket_permissions)  # after _database and _http_client: it uses both
    app.cleanup_ctx.append(github_app_ctx)  # after _http_client: it shares that session
    add_routes(app)
    add_web_routes(app)
    add_dashboard_routes(app)
    return app
