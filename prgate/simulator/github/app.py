"""The GitHub simulator as an aiohttp application.

``create_github_app(config)`` serves a subset of GitHub's REST API (same paths, status codes,
headers and JSON shapes) over the in-memory :class:`SimulatorState`, plus test-control routes
under ``/_sim/``; :mod:`.middleware` does what GitHub does around every API request."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.app import setup_background
from prgate.simulator.core.control import SIM_CONTROLLED
from prgate.simulator.core.types import Clock
from prgate.simulator.github import manifest, oauth
from prgate.simulator.github.auth import AuthKind
from prgate.simulator.github.config import SimulatorConfig
from prgate.simulator.github.keys import SIM_ROUTE_AUTH, SIM_STATE
from prgate.simulator.github.middleware import github_middleware
from prgate.simulator.github.routes import API_ROUTES, SIM_ROUTES
from prgate.simulator.github.state import SimulatorState


def create_github_app(config: SimulatorConfig, *, clock: Clock | None = None) -> web.Application:
    """GitHub's application; ``clock`` (unix seconds) defaults to ``time.time``. It is the simulator's
    root application, since clients use its origin as ``GITHUB_API_URL``."""
    app = web.Application(middlewares=[github_middleware])
    app[SIM_STATE] = SimulatorState(config, clock) if clock is not None else SimulatorState(config)
    app[SIM_CONTROLLED] = app[SIM_STATE]
    setup_background(app)
    route_auth: dict[tuple[str, str], AuthKind] = {}
    for method, path, handler, auth in API_ROUTES:
        app.router.add_route(method, path, handler)
        route_auth[(method, path)] = auth
    for method, path, handler in SIM_ROUTES:
        app.router.add_route(method, path, handler)
    app[SIM_ROUTE_AUTH] = route_auth
    oauth.setup(app, app[SIM_STATE])
    manifest.setup(app, app[SIM_STATE])
    return app
