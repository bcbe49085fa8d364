"""Configuration of the Bitbucket simulator (read once at the entry point and passed down)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prgate.simulator.core.faults import FaultConfig


class BitbucketConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bitbucket's rolling-hour budget per credential on `/2.0/repositories/*` (the "api" resource).
    rate_limit_per_hour: int = Field(1000, ge=1)
    # Real Bitbucket does not document a Retry-After on its 429; a test of a client's fallback turns it off.
    rate_limit_retry_after: bool = True
    default_pagelen: int = Field(10, ge=1)
    max_pagelen: int = Field(100, ge=1)
    seed: int | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)
    request_log_limit: int = Field(100_000, ge=1)
    # Deliveries: Bitbucket waits 10 s and retries twice, only on 5xx and time-outs.
    delivery_timeout_seconds: float = Field(10.0, gt=0)
    delivery_retries: int = Field(2, ge=0)
    delivery_retry_delay_seconds: float = Field(0.2, ge=0)
    # Changes made through the REST API (a comment, a decline) send their webhooks as Bitbucket does.
    webhooks_on_api_changes: bool = True
    # The OAuth 2.0 consumer a backend signs users in with.
    oauth_client_id: str = "prgate-sim-bitbucket-key"
    oauth_client_secret: str = "prgate-sim-bitbucket-secret"
    oauth_callback_url: str | None = None
    token_ttl_seconds: int = Field(7200, ge=1)
