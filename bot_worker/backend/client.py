"""The bot's only way to the backend: signed calls to the internal v2 API.

Every attempt is signed afresh (new timestamp and nonce), so a retry is never a replay.
"""

from __future__ import annotations

from typing import TypeVar

import aiohttp
from pydantic import BaseModel

from shared_contracts import signing
from shared_contracts.actions import (
    BatchResultRequest,
    BatchResultResponse,
    ClaimRequest,
    ClaimResponse,
    LeaseRequest,
    LeaseResponse,
    ResultRequest,
    ResultResponse,
)
from shared_contracts.bitbucket import (
    BitbucketCommandEvent,
    BitbucketPullRequestEvent,
    BitbucketPushEvent,
    BitbucketRediscoverRequest,
    BitbucketRediscoveryReport,
    BitbucketTokenResponse,
)
from shared_contracts.events import (
    CommandEvent,
    ConfigPushEvent,
    IngestBatchResponse,
    IngestResponse,
    InstallationSyncEvent,
    KnownDeliveriesRequest,
    KnownDeliveriesResponse,
    PullRequestEvent,
    RepositoryRenamedEvent,
)
from shared_contracts.reconcile import (
    InstallationSnapshot,
    PullRequestSnapshot,
    ReconcileRunFinish,
    ReconcileRunReport,
    ReconcileRunStart,
    ReconcileRunStarted,
    RepairsResponse,
)
from shared_contracts.repo_config import ConfigRefreshRequest, ConfigRefreshResponse

M = TypeVar("M", bound=BaseModel)

PR_PATH = "/internal/v2/github/events/pull-request"
PR_GROUP_PATH = "/internal/v2/github/events/pull-requests"
INSTALLATION_PATH = "/internal/v2/github/events/installation-sync"
REPOSITORY_RENAMED_PATH = "/internal/v2/github/events/repository-renamed"
COMMAND_PATH = "/internal/v2/github/events/pr-command"
CONFIG_PUSH_PATH = "/internal/v2/github/events/config-push"
BITBUCKET_PR_PATH = "/internal/v2/bitbucket/events/pull-request"
BITBUCKET_COMMAND_PATH = "/internal/v2/bitbucket/events/command"
BITBUCKET_PUSH_PATH = "/internal/v2/bitbucket/events/push"
CONFIG_REFRESH_PATH = "/internal/v2/github/config/refresh"
CLAIM_PATH = "/internal/v2/bot-actions/claim"
RESULTS_PATH = "/internal/v2/bot-actions/results"
KNOWN_DELIVERIES_PATH = "/internal/v2/github/deliveries/known"
KNOWN_DELIVERIES_MAX = 100  # ids per call
RECONCILE_PATH = "/internal/v2/github/reconcile"
BITBUCKET_REDISCOVER_PATH = "/internal/v2/bitbucket/rediscover"


class BackendError(Exception):
    """The backend answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"backend answered {status}: {body[:500]}")
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429


class BackendClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, secret: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._secret = secret

    async def _post(self, path: str, body: BaseModel, response: type[M], timeout: float | None = None) -> M:
        return await self._post_bytes(path, body.model_dump_json().encode(), response, timeout)

    async def _post_bytes(self, path: str, data: bytes, response: type[M], timeout: float | None = None) -> M:
        headers = {"Content-Type": "application/json", **signing.sign(self._secret, "POST", path, data)}
        client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
        async with self._session.post(
            self._base + path, data=data, headers=headers, timeout=client_timeout
        ) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise BackendError(resp.status, text)
        return response.model_validate_json(text)

    async def ingest_pull_request(self, event: PullRequestEvent, timeout: float | None = None) -> IngestResponse:
        return await self._post(PR_PATH, event, IngestResponse, timeout)

    async def ingest_pull_requests(self, events: list[bytes], timeout: float | None = None) -> IngestBatchResponse:
        """The group call; `events` are PullRequestEvents already serialized (`model_dump_json`)."""
        data = b'{"events":[' + b",".join(events) + b"]}"
        return await self._post_bytes(PR_GROUP_PATH, data, IngestBatchResponse, timeout)

    async def ingest_installation(
        self, event: InstallationSyncEvent, timeout: float | None = None
    ) -> IngestResponse:
        return await self._post(INSTALLATION_PATH, event, IngestResponse, timeout)

    async def ingest_repository_renamed(
        self, event: RepositoryRenamedEvent, timeout: float | None = None
    ) -> IngestResponse:
        return await self._post(REPOSITORY_RENAMED_PATH, event, IngestResponse, timeout)

    async def ingest_config_push(self, event: ConfigPushEvent, timeout: float | None = None) -> IngestResponse:
        return await self._post(CONFIG_PUSH_PATH, event, IngestResponse, timeout)

    async def refresh_configs(self, req: ConfigRefreshRequest) -> ConfigRefreshResponse:
        """Each repository is one or a few GitHub reads by the backend: allow a batch its time."""
        return await self._post(CONFIG_REFRESH_PATH, req, ConfigRefreshResponse, timeout=120)

    async def ingest_command(self, event: CommandEvent, timeout: float | None = None) -> IngestResponse:
        return await self._post(COMMAND_PATH, event, IngestResponse, timeout)

    async def ingest_bitbucket_pull_request(
        self, event: BitbucketPullRequestEvent, timeout: float | None = None
    ) -> IngestResponse:
        return await self._post(BITBUCKET_PR_PATH, event, IngestResponse, timeout)

    async def ingest_bitbucket_command(
        self, event: BitbucketCommandEvent, timeout: float | None = None
    ) -> IngestResponse:
        return await self._post(BITBUCKET_COMMAND_PATH, event, IngestResponse, timeout)

    async def ingest_bitbucket_push(self, event: BitbucketPushEvent, timeout: float | None = None) -> IngestResponse:
        return await self._post(BITBUCKET_PUSH_PATH, event, IngestResponse, timeout)

    async def bitbucket_token(self, tenant_id: int, timeout: float | None = 10) -> BitbucketTokenResponse | None:
        """The workspace's access token for a worker about to act on it; None when the backend answers
        404 (the workspace is not connected). Any other error raises BackendError."""
        path = f"/internal/v2/bitbucket/tenants/{int(tenant_id)}/token"
        try:
            return await self._post_bytes(path, b"{}", BitbucketTokenResponse, timeout)
        except BackendError as exc:
            if exc.status == 404:
                return None
            raise

    async def claim(self, req: ClaimRequest) -> ClaimResponse:
        # Long-poll: allow the backend its wait plus a margin.
        return await self._post(CLAIM_PATH, req, ClaimResponse, timeout=req.wait_seconds + 15)

    async def report(self, action_id: int, req: ResultRequest) -> ResultResponse:
        return await self._post(f"/internal/v2/bot-actions/{action_id}/result", req, ResultResponse, timeout=15)

    async def extend_lease(self, action_id: int, req: LeaseRequest) -> LeaseResponse:
        return await self._post(f"/internal/v2/bot-actions/{int(action_id)}/lease", req, LeaseResponse, timeout=10)

    async def report_results(self, req: BatchResultRequest) -> BatchResultResponse:
        return await self._post(RESULTS_PATH, req, BatchResultResponse, timeout=15)

    async def known_deliveries(self, delivery_ids: list[str], timeout: float | None = 15) -> set[str]:
        """The ids among `delivery_ids` the backend has recorded; asks in batches of 100."""
        known: set[str] = set()
        for start in range(0, len(delivery_ids), KNOWN_DELIVERIES_MAX):
            batch = KnownDeliveriesRequest(delivery_ids=delivery_ids[start : start + KNOWN_DELIVERIES_MAX])
            response = await self._post(KNOWN_DELIVERIES_PATH, batch, KnownDeliveriesResponse, timeout)
            known.update(response.known)
        return known

    # Reconciliation (bot_worker/reconcile/, docs/reconcile.md): a snapshot can carry thousands of
    # pull requests and repairs each in its own transaction, hence the longer timeouts.
    async def reconcile_start(self, req: ReconcileRunStart) -> ReconcileRunStarted:
        return await self._post(f"{RECONCILE_PATH}/runs", req, ReconcileRunStarted, timeout=15)

    async def reconcile_installation(self, snap: InstallationSnapshot) -> RepairsResponse:
        return await self._post(f"{RECONCILE_PATH}/installation", snap, RepairsResponse, timeout=60)

    async def reconcile_pull_requests(self, snap: PullRequestSnapshot) -> RepairsResponse:
        return await self._post(f"{RECONCILE_PATH}/pull-requests", snap, RepairsResponse, timeout=120)

    async def bitbucket_rediscover(self, timeout: float = 600) -> BitbucketRediscoveryReport:
        return await self._post(BITBUCKET_REDISCOVER_PATH, BitbucketRediscoverRequest(), BitbucketRediscoveryReport,
                                timeout=timeout)

    async def reconcile_finish(self, run_id: int, req: ReconcileRunFinish) -> ReconcileRunReport:
        return await self._post(f"{RECONCILE_PATH}/runs/{run_id}/finish", req, ReconcileRunReport, timeout=60)
