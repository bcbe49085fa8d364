"""The simulator's composition: another provider mounted beside GitHub keeps its own requests."""

from __future__ import annotations

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import SIM_STATE, create_simulator_app
from prgate.simulator.core.app import mount
from tests.unit.simulator.support import ClientFactory, _config


async def test_a_mounted_provider_is_served_under_its_prefix_past_githubs_middleware(
    aiohttp_client: ClientFactory, app_key: rsa.RSAPrivateKey
) -> None:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"provider": "other"})

    other = web.Application()
    other.router.add_get("/ping", ping)
    root = create_simulator_app(_config(app_key))
    mount(root, "/other", other)
    client = await aiohttp_client(root)

    response = await client.get("/other/ping")
    assert response.status == 200, await response.text()
    assert await response.json() == {"provider": "other"}
    assert "x-github-request-id" not in response.headers
    assert list(root[SIM_STATE].request_log) == []

    github = await client.get("/repos/octo/repo")
    assert github.status == 401
    assert [r.path for r in root[SIM_STATE].request_log] == ["/repos/octo/repo"]
