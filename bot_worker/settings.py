from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from provider_clients.github.app import read_private_key
from shared_contracts.common import comma_list
from shared_contracts.keys import KEY_VARIABLES, Caller, check_keys, check_retired


class BotSettings(BaseSettings):
    """Everything the receiver and the workers read from the environment, read once at the entry point."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    backend_url: str = Field(default="http://127.0.0.1:8080", alias="BACKEND_URL")
    # The receiver signs its calls to the backend with the first PRGATE_RECEIVER_SECRETS entry, the
    # workers (and `prgate reconcile`) with the first PRGATE_WORKER_SECRETS entry (docs/security.md).
    receiver_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_RECEIVER_SECRETS")
    worker_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_WORKER_SECRETS")
    # Read only to refuse it: the single shared key the lists above replaced.
    retired_internal_secrets: SecretStr = Field(default=SecretStr(""), alias="PRGATE_INTERNAL_SECRETS")
    redis_url: str = Field(default="", alias="REDIS_URL")
    queue_name: str = Field(default="prgate:queue", alias="ARQ_QUEUE_NAME")

    # Receiver
    host: str = Field(default="0.0.0.0", alias="BOT_HOST")
    port: int = Field(default=8081, alias="BOT_PORT")
    github_webhook_secret: SecretStr = Field(default=SecretStr(""), alias="GITHUB_WEBHOOK_SECRET")
    # More webhook secrets a delivery may be signed with, comma-separated: during a rotation the new
    # and the old one both verify (docs/operations.md). GITHUB_WEBHOOK_SECRET is read verbatim, so
    # a secret with a comma in it still works there.
    github_webhook_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="GITHUB_WEBHOOK_SECRETS"
    )
    # Masters of the per-workspace Bitbucket hook secrets, comma-separated: a delivery to
    # /webhooks/bitbucket/{uuid} verifies with derive(master, uuid) for any of them (docs/bitbucket.md).
    bitbucket_webhook_secret: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="BITBUCKET_WEBHOOK_SECRET"
    )
    forward_timeout_seconds: float = Field(default=3.0, alias="FORWARD_TIMEOUT_SECONDS")
    # pull_request deliveries that arrive while a forward is in flight go together in the next call
    # (bot_worker/webhooks/group.py); 1 sends each delivery on its own call.
    forward_group_max: int = Field(default=50, ge=1, le=100, alias="FORWARD_GROUP_MAX")
    forward_group_lanes: int = Field(default=2, ge=1, le=16, alias="FORWARD_GROUP_LANES")
    # A client that stops sending mid-body (slow loris) gets a 408 and its connection closed after this.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300, alias="BODY_READ_TIMEOUT_SECONDS")
    # Bodies read at once, and the bytes they may hold together, before their signature is known; past
    # either bound a delivery is shed with 503 + Retry-After (bot_worker/webhooks/intake.py).
    max_concurrent_bodies: int = Field(default=8, ge=1, le=1000, alias="RECEIVER_MAX_CONCURRENT_BODIES")
    max_body_bytes_in_flight: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024, alias="RECEIVER_MAX_BODY_BYTES_IN_FLIGHT"
    )

    # GitHub App
    github_api_url: str = Field(default="https://api.github.com", alias="GITHUB_API_URL")
    github_app_id: str = Field(default="", alias="GITHUB_APP_ID")
    github_private_key: SecretStr = Field(default=SecretStr(""), alias="GITHUB_PRIVATE_KEY")
    github_private_key_path: Path | None = Field(default=None, alias="GITHUB_PRIVATE_KEY_PATH")

    # Bitbucket Cloud (docs/bitbucket.md): the REST API the worker's Bitbucket actions go to.
    bitbucket_api_url: str = Field(default="https://api.bitbucket.org", alias="BITBUCKET_API_URL")

    # Worker
    worker_id: str = Field(default="", alias="WORKER_ID")
    worker_concurrency: int = Field(default=16, ge=1, le=100, alias="WORKER_CONCURRENCY")
    lease_seconds: int = Field(default=60, ge=5, le=3600, alias="WORKER_LEASE_SECONDS")
    claim_wait_seconds: float = Field(default=20.0, ge=0, le=30, alias="WORKER_CLAIM_WAIT_SECONDS")
    provider_timeout_seconds: float = Field(default=10.0, gt=0, alias="PROVIDER_TIMEOUT_SECONDS")
    # Kept free at the end of a lease to report the result; a write starts only when the provider
    # timeout plus this margin fits in what is left of the lease (docs/security.md, "A run that outlives its lease
    # keeps writing").
    report_margin_seconds: float = Field(default=15.0, ge=0, le=600, alias="WORKER_REPORT_MARGIN_SECONDS")
    writes_per_minute: int = Field(default=80, ge=1, alias="GITHUB_WRITES_PER_MINUTE")
    metrics_port: int = Field(default=9101, alias="WORKER_METRICS_PORT")
    shutdown_grace_seconds: float = Field(default=20.0, alias="WORKER_SHUTDOWN_GRACE_SECONDS")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    # Young-generation threshold once started; 0 keeps CPython's 700 (prgate/gc_tuning.py says why).
    gc_gen0_threshold: int = Field(default=20_000, ge=0, le=10_000_000, alias="GC_GEN0_THRESHOLD")

    # Redelivery of failed GitHub deliveries (bot_worker/jobs/redelivery.py, docs/redelivery.md)
    redelivery_interval_seconds: float = Field(default=300.0, ge=0, alias="REDELIVERY_INTERVAL_SECONDS")
    redelivery_lookback_hours: float = Field(default=72.0, gt=0, le=72, alias="REDELIVERY_LOOKBACK_HOURS")

    # Bitbucket workspaces' repositories listed again (bot_worker/jobs/bitbucket_discovery.py); 0 disables.
    bitbucket_discovery_interval_seconds: float = Field(
        default=3600.0, ge=0, alias="BITBUCKET_DISCOVERY_INTERVAL_SECONDS"
    )

    # Reconciliation with GitHub (bot_worker/reconcile/, docs/reconcile.md)
    reconcile_interval_seconds: float = Field(default=3600.0, ge=0, alias="RECONCILE_INTERVAL_SECONDS")
    reconcile_max_repositories: int = Field(default=200, ge=1, alias="RECONCILE_MAX_REPOSITORIES")
    reconcile_max_pr_pages: int = Field(default=10, ge=1, le=20, alias="RECONCILE_MAX_PR_PAGES")
    reconcile_rate_limit_reserve: float = Field(default=0.2, ge=0, lt=1, alias="RECONCILE_RATE_LIMIT_RESERVE")

    # Reading the config files of repositories marked stale (bot_worker/jobs/config_refresh.py,
    # docs/configuration.md): installed ones, and those inheriting from a pushed file.
    config_refresh_interval_seconds: float = Field(default=30.0, ge=0, alias="CONFIG_REFRESH_INTERVAL_SECONDS")
    config_refresh_batch: int = Field(default=20, ge=1, le=100, alias="CONFIG_REFRESH_BATCH")

    _split_secrets = field_validator(
        "receiver_secrets", "worker_secrets", "github_webhook_secrets", "bitbucket_webhook_secret", mode="before"
    )(comma_list)

    def webhook_secrets(self) -> list[bytes]:
        """Every secret a webhook may be signed with: GITHUB_WEBHOOK_SECRET, then GITHUB_WEBHOOK_SECRETS."""
        found: list[bytes] = []
        for secret in [self.github_webhook_secret.get_secret_value(), *self.github_webhook_secrets]:
            if secret and secret.encode() not in found:
                found.append(secret.encode())
        return found

    def bitbucket_masters(self) -> list[bytes]:
        """The Bitbucket master secrets, in order (the first is the one the backend registers hooks with)."""
        found: list[bytes] = []
        for master in self.bitbucket_webhook_secret:
            if master.encode() not in found:
                found.append(master.encode())
        return found

    def signing_key(self, caller: Caller) -> str:
        """The key ``caller`` (the receiver or a worker) signs with, after refusing unusable ones.

        Raises InsecureSecret (a ValueError) with the one line to print.
        """
        if self.retired_internal_secrets.get_secret_value():
            check_retired({"PRGATE_INTERNAL_SECRETS": "set"})
        keys = self.receiver_secrets if caller is Caller.RECEIVER else self.worker_secrets
        check_keys(KEY_VARIABLES[caller], keys)
        return keys[0]

    def private_key_pem(self) -> str:
        """The App's private key, from GITHUB_PRIVATE_KEY or else GITHUB_PRIVATE_KEY_PATH ('' when neither)."""
        return read_private_key(self.github_private_key.get_secret_value(), self.github_private_key_path)
