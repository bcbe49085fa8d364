"""The GitHub simulator and an App key pair, shared by every test that talks to "GitHub"."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from prgate.simulator import SimulatorState

APP_ID = 424242


@dataclass(frozen=True)
class AppKeys:
    private_pem: str
    public_pem: str


@cache
def app_keys() -> AppKeys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return AppKeys(private_pem, public_pem)


@dataclass
class Simulator:
    server: TestServer
    state: SimulatorState

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")
