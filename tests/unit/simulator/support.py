"""Shared helpers of the simulator tests: a fake clock and a seeded simulator over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import (
    SIM_STATE,
    SimulatorConfig,
    SimulatorState,
)

APP_ID = 4242
T0 = 1_700_000_000.0

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
Client = TestClient[web.Request, web.Application]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Sim:
    """A running simulator seeded with two installations, their repositories and one PR."""

    def __init__(self, client: Client, clock: FakeClock, key: rsa.RSAPrivateKey) -> None:
        self.client = client
        self.clock = clock
        self.key = key
        self.state: SimulatorState = client.app[SIM_STATE]

    def seed(self) -> None:
        self.state.add_installation(123, "octo", 1, "Organization")
        self.state.add_repository(123, 1296269, "octo/repo")
        self.state.add_repository(123, 1296270, "octo/second", private=True)
        self.state.add_installation(456, "other", 2, "User")
        self.state.add_repository(456, 777, "other/repo")
        self.state.upsert_pull_request(
            "octo/repo", 17, author_login="alice", author_id=9, author_association="NONE", head_sha="a" * 40
        )
        self.state.upsert_pull_request("other/repo", 1, author_login="bob", author_id=10)

    def jwt(
        self,
        *,
        iat: float | None = None,
        exp: float | None = None,
        iss: str = str(APP_ID),
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        issued = self.clock.now - 30 if iat is None else iat
        return jwt.encode(
            {"iat": int(issued), "exp": int(issued + 540 if exp is None else exp), "iss": iss},
            key or self.key,
            algorithm="RS256",
        )

    def app_headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.jwt()}", "Accept": "application/vnd.github+json"}

    async def token(self, installation_id: int = 123, **body: Any) -> str:
        response = await self.client.post(
            f"/app/installations/{installation_id}/access_tokens", headers=self.app_headers(), json=body or None
        )
        assert response.status == 201, await response.text()
        data = await response.json()
        return str(data["token"])

    @staticmethod
    def auth(token: str, scheme: str = "token") -> dict[str, str]:
        return {"Authorization": f"{scheme} {token}", "Accept": "application/vnd.github+json"}


def _config(app_key: rsa.RSAPrivateKey, **overrides: Any) -> SimulatorConfig:
    return SimulatorConfig(app_id=APP_ID, app_public_key_pem=_pem_public(app_key), **overrides)


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}

