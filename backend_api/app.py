"""The backend application factory."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

from aiohttp import web

from backend_api import maintenance
from backend_api.http.auth import internal_auth_middleware
from backend_api.http.errors import MAX_BODY_BYTES, error_middleware
from backend_api.http.keys import DB_POOL, NOTIFIER, RNG, SETTINGS
from backend_api.http.routes import add_routes
from backend_api.outbox.notifier import ActionNotifier
from backend_api.settings import BackendSettings
from backend_api.store.db import create_pool


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    notifier = app[NOTIFIER]
    await notifier.start(settings.database_url)
    app[DB_POOL] = pool
    sweeper = asyncio.create_task(maintenance.run_forever(
        pool, settings.sweep_interval_seconds, public_url=settings.public_url,
        max_attempts=settings.action_max_attempts,
    ))
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await notifier.stop()
    await pool.close()


def create_app(settings: BackendSettings, *, rng: random.Random | None = None) -> web.Application:
    if not settings.internal_secrets:
        raise ValueError("PRGATE_INTERNAL_SECRETS must hold at least one secret")
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware, internal_auth_middleware]
    )
    app[SETTINGS] = settings
    app[NOTIFIER] = ActionNotifier()
    app[RNG] = rng or random.Random()
    app.cleanup_ctx.append(_database)
    add_routes(app)
    return app
