"""Environment of `prgate simulator`, read once at its entry point."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", alias="SIMULATOR_HOST")
    port: int = Field(default=8090, alias="SIMULATOR_PORT")
    app_id: int = Field(default=1, alias="GITHUB_APP_ID")
    private_key: SecretStr = Field(default=SecretStr(""), alias="GITHUB_PRIVATE_KEY")
    private_key_path: Path | None = Field(default=None, alias="GITHUB_PRIVATE_KEY_PATH")
    webhook_url: str | None = Field(default=None, alias="SIMULATOR_WEBHOOK_URL")
    webhook_secret: SecretStr = Field(default=SecretStr(""), alias="GITHUB_WEBHOOK_SECRET")
    seed: int | None = Field(default=None, alias="SIMULATOR_SEED")
    secondary_limit_per_minute: int = Field(default=80, alias="SIMULATOR_SECONDARY_LIMIT_PER_MINUTE")
    rate_limit_per_hour: int = Field(default=5000, alias="SIMULATOR_RATE_LIMIT_PER_HOUR")
    # Bitbucket (served under /bitbucket): its rolling-hour budget per access token, and the OAuth
    # consumer the backend signs users in with (the same names the backend reads).
    bitbucket_rate_limit_per_hour: int = Field(default=1000, ge=1, alias="SIMULATOR_BITBUCKET_RATE_LIMIT_PER_HOUR")
    bitbucket_oauth_client_id: str = Field(default="prgate-sim-bitbucket-key", alias="BITBUCKET_OAUTH_CLIENT_ID")
    bitbucket_oauth_client_secret: SecretStr = Field(
        default=SecretStr("prgate-sim-bitbucket-secret"), alias="BITBUCKET_OAUTH_CLIENT_SECRET"
    )

    def public_key_pem(self) -> str:
        """The App's public key, derived from the same private key the workers sign with."""
        pem = self.private_key.get_secret_value().replace("\\n", "\n")
        if not pem and self.private_key_path is not None:
            pem = self.private_key_path.read_text()
        if not pem:
            raise SystemExit("the simulator needs GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH to verify App JWTs")
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def simulator_settings() -> SimulatorSettings:
    return SimulatorSettings()
