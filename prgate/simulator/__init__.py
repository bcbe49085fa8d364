"""A stateful GitHub REST API simulator for tests, benchmarks and the demo.

Typical use in a test::

    app = create_simulator_app(SimulatorConfig(app_id=1, app_public_key_pem=pem))
    client = await aiohttp_client(app)
    state = app[SIM_STATE]
    state.add_installation(123, "octo")
    state.add_repository(123, 1296269, "octo/repo")
    state.upsert_pull_request("octo/repo", 17, author_login="alice")
"""

from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.faults import FaultConfig, FaultInjector, FaultProfile, FaultRule
from prgate.simulator.github.config import SimulatorConfig
from prgate.simulator.github.keys import SIM_STATE
from prgate.simulator.github.oauth import SIM_OAUTH, OAuthStore
from prgate.simulator.github.render import Renderer
from prgate.simulator.github.state import SimulatorState
from prgate.simulator.github.webhooks import deliver, send_webhook, signature_256
from prgate.simulator.server import BITBUCKET_APP, create_simulator_app, run_simulator

__all__ = [
    "BB_STATE",
    "BITBUCKET_APP",
    "SIM_OAUTH",
    "SIM_STATE",
    "BitbucketConfig",
    "BitbucketState",
    "FaultConfig",
    "FaultInjector",
    "FaultProfile",
    "FaultRule",
    "OAuthStore",
    "Renderer",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorState",
    "create_simulator_app",
    "deliver",
    "run_simulator",
    "send_webhook",
    "signature_256",
]
