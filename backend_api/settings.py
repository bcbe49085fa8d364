from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend_api.crypto import Vault
from backend_api.crypto import check_keys as check_encryption_keys
from backend_api.gate.parking import ParkingLimits
from backend_api.owner.access import parse_operator
from shared_contracts.common import comma_list
from shared_contracts.keys import (
    KEY_VARIABLES,
    Caller,
    InsecureSecret,
    check_distinct,
    check_keys,
    check_retired,
    check_secret,
)


class BackendSettings(BaseSettings):
    """Everything the backend reads from the environment, read once at the entry point."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = Field(default="", alias="DATABASE_URL")
    # One key list per caller of /internal/v2 (shared_contracts.keys; docs/security.md): the first
    # entry of each is the one that component signs with, every entry verifies.
    receiver_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_RECEIVER_SECRETS")
    worker_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_WORKER_SECRETS")
    admin_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_ADMIN_SECRETS")
    # Read only to refuse it: the single shared key these lists replaced.
    retired_internal_secrets: SecretStr = Field(default=SecretStr(""), alias="PRGATE_INTERNAL_SECRETS")
    host: str = Field(default="0.0.0.0", alias="BACKEND_HOST")
    port: int = Field(default=8080, alias="BACKEND_PORT")
    # > 0: /internal/* is served only on this port (a second listener on BACKEND_HOST) and answers 404
    # on BACKEND_PORT, so the public port can be exposed and the internal one fenced (chart NetworkPolicy).
    # 0: one listener serves both (the demo, tests).
    internal_port: int = Field(default=0, ge=0, le=65535, alias="BACKEND_INTERNAL_PORT")
    # A client that stops sending mid-body (slow loris) gets a 408 and its connection closed after this.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300, alias="BODY_READ_TIMEOUT_SECONDS")
    public_url: str = Field(default="http://127.0.0.1:8080", alias="BACKEND_PUBLIC_URL")
    # Where GitHub reaches the webhook receiver (prgate bot), without the path: the App manifest's
    # default webhook URL is this + /webhooks/github. Not BACKEND_PUBLIC_URL: the backend answers 404 there.
    bot_public_url: str = Field(default="http://127.0.0.1:8081", pattern=r"^https?://[^/\s]+(/\S*)?$",
                                alias="BOT_PUBLIC_URL")
    db_pool_min: int = Field(default=2, alias="DB_POOL_MIN")
    db_pool_max: int = Field(default=10, alias="DB_POOL_MAX")
    # pull_request deliveries that arrive together share a transaction (backend_api/gate/batcher.py):
    # at most this many per transaction, and this many transactions at once (each holds a connection).
    ingest_batch_max: int = Field(default=50, ge=1, le=500, alias="INGEST_BATCH_MAX")
    ingest_lanes: int = Field(default=4, ge=1, le=64, alias="INGEST_LANES")
    sweep_interval_seconds: float = Field(default=5.0, alias="SWEEP_INTERVAL_SECONDS")
    # Events for an installation not known yet wait for it (backend_api/gate/parking.py): at most
    # this many per installation and in all (beyond: DROPPED, counted), deleted after the TTL (GitHub
    # redelivers for 3 days; an installation event not in by then never comes).
    parked_events_per_installation_max: int = Field(
        default=1000, ge=0, le=1_000_000, alias="PARKED_EVENTS_PER_INSTALLATION_MAX"
    )
    parked_events_max: int = Field(default=50_000, ge=0, le=10_000_000, alias="PARKED_EVENTS_MAX")
    parked_event_ttl_seconds: float = Field(default=3 * 24 * 3600, gt=0, alias="PARKED_EVENT_TTL_SECONDS")
    action_max_attempts: int = Field(default=8, alias="ACTION_MAX_ATTEMPTS")
    # Wrong answers on the verification page per challenge and per session within the window;
    # beyond, 429 until the oldest leaves the window (docs/verification.md).
    verify_wrong_answers_max: int = Field(default=5, ge=1, le=1000, alias="VERIFY_WRONG_ANSWERS_MAX")
    verify_wrong_answers_window_seconds: int = Field(
        default=900, ge=1, le=7 * 24 * 3600, alias="VERIFY_WRONG_ANSWERS_WINDOW_SECONDS"
    )
    backoff_base_seconds: float = Field(default=2.0, alias="ACTION_BACKOFF_BASE_SECONDS")
    backoff_cap_seconds: float = Field(default=900.0, alias="ACTION_BACKOFF_CAP_SECONDS")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    # Young-generation threshold once started; 0 keeps CPython's 700 (prgate/gc_tuning.py says why).
    gc_gen0_threshold: int = Field(default=20_000, ge=0, le=10_000_000, alias="GC_GEN0_THRESHOLD")
    # Verification pages: GitHub sign-in (OAuth web flow) and the browser session (docs/verification.md).
    github_web_url: str = Field(default="https://github.com", alias="GITHUB_WEB_URL")
    github_api_url: str = Field(default="https://api.github.com", alias="GITHUB_API_URL")
    github_client_id: str = Field(default="", alias="GITHUB_CLIENT_ID")
    github_client_secret: SecretStr = Field(default=SecretStr(""), alias="GITHUB_CLIENT_SECRET")
    # Required (create_app refuses to start without it); `prgate up` generates one for the demo.
    session_secret: SecretStr = Field(default=SecretStr(""), alias="SESSION_SECRET")

    # Owner API: the App's credentials, to ask GitHub (with an installation token) who administers a
    # repository (backend_api.github.app). GITHUB_PRIVATE_KEY wins over GITHUB_PRIVATE_KEY_PATH.
    github_app_id: str = Field(default="", alias="GITHUB_APP_ID")
    github_private_key: SecretStr = Field(default=SecretStr(""), alias="GITHUB_PRIVATE_KEY")
    github_private_key_path: Path | None = Field(default=None, alias="GITHUB_PRIVATE_KEY_PATH")
    # Operator dashboard (/dashboard): who may see every tenant, comma-separated `login:id` entries
    # (matched by GitHub user id; a bare login still works, matched by login, with a start-up warning).
    operators: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_OPERATORS")
    # Owner API calls one session may make per minute past the sign-in check (each may cost GitHub a
    # permission check); beyond: 429 (docs/owner-api.md).
    owner_api_checks_per_minute: int = Field(default=60, ge=1, le=10_000, alias="OWNER_API_CHECKS_PER_MINUTE")

    # Bitbucket Cloud (docs/bitbucket.md). Credentials at rest: comma-separated Fernet keys, the first
    # encrypts, all decrypt (backend_api/crypto.py). Required once a workspace is connected.
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_ENCRYPTION_KEY")
    bitbucket_api_url: str = Field(default="https://api.bitbucket.org", pattern=r"^https?://[^/\s]+(/\S*)?$",
                                   alias="BITBUCKET_API_URL")
    bitbucket_web_url: str = Field(default="https://bitbucket.org", pattern=r"^https?://[^/\s]+(/\S*)?$",
                                   alias="BITBUCKET_WEB_URL")
    # Master of the per-workspace hook secrets (provider_clients.bitbucket.hook_secret): the first
    # derives the secret a hook is registered with; the receiver verifies with each.
    bitbucket_webhook_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="BITBUCKET_WEBHOOK_SECRET"
    )
    # How long a worker may keep a workspace's token in memory (the token route's ttl_seconds).
    bitbucket_token_ttl_seconds: int = Field(default=300, ge=1, le=3600, alias="BITBUCKET_TOKEN_TTL_SECONDS")
    # "Sign in with Bitbucket" on a Bitbucket challenge's page (an OAuth 2.0 consumer,
    # docs/verification.md): authorize and token on BITBUCKET_WEB_URL, `GET /2.0/user` on
    # BITBUCKET_API_URL. Unset client: the page says Bitbucket sign-in is not configured.
    bitbucket_oauth_client_id: str = Field(default="", alias="BITBUCKET_OAUTH_CLIENT_ID")
    bitbucket_oauth_client_secret: SecretStr = Field(default=SecretStr(""), alias="BITBUCKET_OAUTH_CLIENT_SECRET")

    _split_secrets = field_validator(
        "receiver_secrets", "worker_secrets", "admin_secrets", "encryption_keys", "bitbucket_webhook_secrets",
        mode="before",
    )(comma_list)

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys_parse(cls, value: list[str]) -> list[str]:
        check_encryption_keys(value)
        return value
    _split_operators = field_validator("operators", mode="before")(comma_list)

    @field_validator("operators")
    @classmethod
    def _operators_parse(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_operator(entry)
        return value

    @model_validator(mode="after")
    def _ingest_leaves_connections(self) -> BackendSettings:
        # Each ingest lane holds a pooled connection for its transaction; with as many lanes as
        # connections, claims, results and the sweeper would wait behind webhook bursts.
        if self.ingest_lanes >= self.db_pool_max:
            raise ValueError(
                f"INGEST_LANES ({self.ingest_lanes}) must be below DB_POOL_MAX ({self.db_pool_max}): each lane "
                "holds a connection, and claims, results and the sweeper need the others"
            )
        if self.internal_port and self.internal_port == self.port:
            raise ValueError("BACKEND_INTERNAL_PORT must differ from BACKEND_PORT (or be 0 to share it)")
        return self

    def vault(self) -> Vault | None:
        """The credential vault; None when PRGATE_ENCRYPTION_KEY is not set (no Bitbucket then)."""
        return Vault(self.encryption_keys) if self.encryption_keys else None

    def bitbucket_hook_master(self) -> bytes | None:
        return self.bitbucket_webhook_secrets[0].encode() if self.bitbucket_webhook_secrets else None

    def parking_limits(self) -> ParkingLimits:
        return ParkingLimits(
            per_installation=self.parked_events_per_installation_max, total=self.parked_events_max,
            ttl_seconds=self.parked_event_ttl_seconds,
        )

    def keyring(self) -> dict[Caller, list[str]]:
        """Every caller's verifying keys."""
        return {Caller.RECEIVER: self.receiver_secrets, Caller.WORKER: self.worker_secrets,
                Caller.ADMIN: self.admin_secrets}

    def check_secrets(self) -> None:
        """Refuse to start with missing, short, known or shared secrets (raises InsecureSecret)."""
        if self.retired_internal_secrets.get_secret_value():
            check_retired({"PRGATE_INTERNAL_SECRETS": "set"})
        check_keys(KEY_VARIABLES[Caller.RECEIVER], self.receiver_secrets)
        check_keys(KEY_VARIABLES[Caller.WORKER], self.worker_secrets)
        check_keys(KEY_VARIABLES[Caller.ADMIN], self.admin_secrets, required=False)
        check_distinct(self.keyring())
        session = self.session_secret.get_secret_value()
        if not session:
            raise InsecureSecret(
                "SESSION_SECRET is not set: it signs the session cookies and must be a secret of its own "
                "(`openssl rand -hex 32`; docs/security.md)"
            )
        check_secret("SESSION_SECRET", session)
        if session in {key for keys in self.keyring().values() for key in keys}:
            raise InsecureSecret("SESSION_SECRET must differ from every internal key (docs/security.md)")
