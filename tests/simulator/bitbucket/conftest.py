"""Fixtures of the Bitbucket simulator tests: the whole simulator app (GitHub at the root,
Bitbucket under /bitbucket) on a real port, seeded with two workspaces, and a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import create_simulator_app
from prgate.simulator.bitbucket.config import BitbucketConfig
from tests.simulator.bitbucket.support import BB, Receiver
from tests.unit.simulator.support import FakeClock, _config

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def make_bb(aiohttp_server: ServerFactory, clock: FakeClock, app_key: rsa.RSAPrivateKey,
            session: aiohttp.ClientSession) -> Callable[..., Awaitable[BB]]:
    async def make(**overrides: Any) -> BB:
        config = BitbucketConfig(**{"delivery_retry_delay_seconds": 0.0, **overrides})
        server = await aiohttp_server(create_simulator_app(_config(app_key), clock=clock, bitbucket=config))
        bb = BB(server, session, clock)
        await bb.seed()
        return bb

    return make


@pytest.fixture
async def bb(make_bb: Callable[..., Awaitable[BB]]) -> BB:
    return await make_bb()


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", receiver.handle)
    receiver.server = await aiohttp_server(app)
    return receiver
