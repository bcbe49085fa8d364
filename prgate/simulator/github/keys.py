"""The GitHub simulator's application keys."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.github.auth import AuthKind
from prgate.simulator.github.state import SimulatorState

SIM_STATE = web.AppKey("prgate_sim_state", SimulatorState)
SIM_ROUTE_AUTH: web.AppKey[dict[tuple[str, str], AuthKind]] = web.AppKey("prgate_sim_route_auth")
