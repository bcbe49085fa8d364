"""The Bitbucket Cloud simulator as an aiohttp application, mounted under ``/bitbucket``.

Clients use ``BITBUCKET_API_URL={sim}/bitbucket`` (REST at ``…/bitbucket/2.0/…``) and
``BITBUCKET_WEB_URL={sim}/bitbucket`` (OAuth at ``…/bitbucket/site/oauth2/…``, pull-request pages
at ``…/bitbucket/{ws}/{slug}/pull-requests/{id}``)."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.bitbucket import oauth
from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.http import BB_PREFIX, BB_ROUTE_AUTH, BB_STATE
from prgate.simulator.bitbucket.middleware import bitbucket_middleware
from prgate.simulator.bitbucket.routes import API_ROUTES, PAGE_ROUTES, SIM_ROUTES
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.app import setup_background
from prgate.simulator.core.control import SIM_CONTROLLED, Handler
from prgate.simulator.core.types import Clock

PREFIX = "/bitbucket"


def create_bitbucket_app(config: BitbucketConfig | None = None, *, clock: Clock | None = None,
                         prefix: str = PREFIX) -> web.Application:
    """Bitbucket's sub-application; ``prefix`` is where it is mounted (links and `next` use it)."""
    config = config or BitbucketConfig()
    app = web.Application(middlewares=[bitbucket_middleware])
    state = BitbucketState(config, clock) if clock is not None else BitbucketState(config)
    app[BB_STATE] = state
    app[SIM_CONTROLLED] = state
    app[BB_PREFIX] = prefix
    setup_background(app)
    route_auth: dict[tuple[str, Handler], str] = {}
    for method, path, handler, auth in API_ROUTES:
        app.router.add_route(method, path, handler)
        route_auth[(method, handler)] = auth
    for method, path, handler in SIM_ROUTES:
        app.router.add_route(method, path, handler)
    oauth.setup(app, state)
    for method, path, handler in PAGE_ROUTES:
        app.router.add_route(method, path, handler)
    app[BB_ROUTE_AUTH] = route_auth
    return app
