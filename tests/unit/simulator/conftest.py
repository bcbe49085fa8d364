"""Fixtures of the simulator tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import (
    create_simulator_app,
)
from tests.unit.simulator.support import (
    ClientFactory,
    FakeClock,
    Sim,
    _config,
)


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sim(
    aiohttp_client: ClientFactory, clock: FakeClock, app_key: rsa.RSAPrivateKey
) -> Callable[..., Awaitable[Sim]]:
    async def make(**overrides: Any) -> Sim:
        client = await aiohttp_client(create_simulator_app(_config(app_key, **overrides), clock=clock))
        sim = Sim(client, clock, app_key)
        sim.seed()
        return sim

    return make


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Sim]]) -> Sim:
    return await make_sim()


