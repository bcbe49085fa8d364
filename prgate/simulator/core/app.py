"""What every simulated provider's application shares: the client session its webhooks go out
on, its background tasks, and serving it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

SIM_SESSION = web.AppKey("prgate_sim_session", aiohttp.ClientSession)
SIM_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("prgate_sim_tasks")


def spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in the background (a webhook sent after a change); cancelled at cleanup."""
    task = asyncio.get_running_loop().create_task(coro)
    app[SIM_TASKS].add(task)
    task.add_done_callback(app[SIM_TASKS].discard)


async def client_session(app: web.Application) -> AsyncIterator[None]:
    app[SIM_SESSION] = aiohttp.ClientSession()
    yield
    pending = app[SIM_TASKS]
    tasks = list(pending)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[SIM_SESSION].close()


def setup_background(app: web.Application) -> None:
    """Give a provider's ``app`` the one client session its webhooks go out on, and a task set that is
    cancelled before the session closes."""
    app[SIM_TASKS] = set()
    app.cleanup_ctx.append(client_session)


def mount(root: web.Application, prefix: str, provider: web.Application) -> None:
    """Serve another provider's application under ``prefix`` (e.g. ``/bitbucket``) of the root one.

    GitHub stays the root application (its clients use the bare origin as ``GITHUB_API_URL``, and
    aiohttp cannot mount a sub-app at ``/``); each other provider is a sub-app with its own state,
    middleware and ``/_sim/`` routes under its prefix. A provider that must own a whole origin can
    instead be served on its own port with :func:`serve`.
    """
    root.add_subapp(prefix, provider)


def served_by_subapp(request: web.Request) -> bool:
    """True when ``request`` was routed into a mounted sub-app. aiohttp runs the root application's
    middlewares for sub-app requests too, so the root provider's middleware steps aside for these."""
    return len(request.match_info.apps) > 1


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until cancelled."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
