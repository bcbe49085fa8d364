"""Configuration of one GitHub simulator instance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prgate.simulator.core.faults import FaultConfig


class SimulatorConfig(BaseModel):
    """Configuration of one simulator instance; read once at the entry point and passed down."""

    model_config = ConfigDict(extra="forbid")

    app_id: int
    app_public_key_pem: str
    app_slug: str = "prgate"
    app_bot_user_id: int = 900_000_001
    token_length: int = Field(520, ge=40)
    token_ttl_seconds: int = Field(3600, ge=1)
    rate_limit_per_hour: int = Field(5000, ge=1)
    secondary_limit_per_minute: int = Field(80, ge=1)
    seed: int | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)
    # Webhooks the simulator sends itself (on /_sim/ changes asking for it, and on API changes).
    webhook_url: str | None = None
    webhook_secret: str = ""
    webhooks_on_api_changes: bool = True
    html_base_url: str = "https://github.com"
    # Used for URLs in webhook payloads and in-process rendering, where there is no request.
    api_base_url: str = "https://api.github.com"
    request_log_limit: int = Field(100_000, ge=1)
    # The OAuth web flow (oauth.py): the client a backend signs users in with.
    oauth_client_id: str = "prgate-sim-oauth-client"
    oauth_client_secret: str = "prgate-sim-oauth-secret"

    @property
    def client_id(self) -> str:
        """The App's client id; GitHub accepts it as well as the numeric app id as a JWT ``iss``."""
        return f"Iv1.{self.app_id:016x}"
