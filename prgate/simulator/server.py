"""The simulator's one application: every simulated provider, each under its own prefix.

GitHub is the root application (clients use the bare origin as ``GITHUB_API_URL``); the next
providers (``bitbucket/``, ``jira/``) plug in here with :func:`prgate.simulator.core.app.mount`,
each a sub-app with its own state, faults and ``/_sim/`` routes under its prefix.
"""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.bitbucket.app import PREFIX as BITBUCKET_PREFIX
from prgate.simulator.bitbucket.app import create_bitbucket_app
from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.core.app import mount, serve
from prgate.simulator.core.types import Clock
from prgate.simulator.github.app import create_github_app
from prgate.simulator.github.config import SimulatorConfig

# The mounted Bitbucket application (its state: `root[BITBUCKET_APP][BB_STATE]`), for in-process seeding.
BITBUCKET_APP = web.AppKey("prgate_sim_bitbucket_app", web.Application)


def create_simulator_app(config: SimulatorConfig, *, clock: Clock | None = None,
                         bitbucket: BitbucketConfig | None = None) -> web.Application:
    """The simulator app; ``clock`` (unix seconds) defaults to ``time.time``. Bitbucket is served
    under ``/bitbucket`` (``bitbucket`` configures it; Bitbucket's defaults otherwise)."""
    root = create_github_app(config, clock=clock)
    root[BITBUCKET_APP] = create_bitbucket_app(bitbucket, clock=clock, prefix=BITBUCKET_PREFIX)
    mount(root, BITBUCKET_PREFIX, root[BITBUCKET_APP])
    return root


async def run_simulator(host: str, port: int, config: SimulatorConfig, *,
                        bitbucket: BitbucketConfig | None = None) -> None:
    """Serve the simulator on ``host:port`` until cancelled."""
    await serve(create_simulator_app(config, bitbucket=bitbucket), host, port)
