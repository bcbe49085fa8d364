"""A connected Bitbucket workspace and gated Bitbucket pull requests, for the verification tests.

The pull requests go through the Bitbucket gate use case (``gate.bitbucket.ingest_pull_request``), the
one the Bitbucket ingest route calls, so challenge rows, ids and gate comments are the real ones.
"""

from __future__ import annotations

import uuid

import asyncpg

from backend_api.gate.bitbucket import CachedPermissions, PermissionApi, ingest_pull_request
from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.bitbucket.state import BitbucketState
from prgate.simulator.server import BITBUCKET_APP
from shared_contracts.bitbucket import (
    BitbucketAccount,
    BitbucketPullRequest,
    BitbucketPullRequestEvent,
    BitbucketRepository,
)
from shared_contracts.events import IngestResponse
from tests.support.github_sim import Simulator

BB_CLIENT_ID = BitbucketConfig.model_fields["oauth_client_id"].default
BB_CLIENT_SECRET = BitbucketConfig.model_fields["oauth_client_secret"].default
WORKSPACE_UUID = "6f1c7e0a-3b7d-4c55-9d2e-0a1b2c3d4e5f"
REPO_UUID = "0b9e1f2a-7c3d-4e5f-8a9b-1c2d3e4f5a6b"
AUTHOR = BitbucketAccount(uuid="11111111-2222-4333-8444-555555555555", account_id="557058:author",
                          nickname="newcomer", display_name="New Comer")
MALLORY = BitbucketAccount(uuid="99999999-8888-4777-8666-555555555555", account_id="557058:mallory",
                           nickname="mallory", display_name="Mallory")
HEAD = "abcdef012345"  # Bitbucket's payloads carry 12-character hashes


def bitbucket(simulator: Simulator) -> BitbucketState:
    state: BitbucketState = simulator.server.app[BITBUCKET_APP][BB_STATE]
    return state


def add_users(simulator: Simulator, *accounts: BitbucketAccount) -> None:
    for account in accounts:
        bitbucket(simulator).add_user(account.account_id or "", uuid=account.uuid, nickname=account.nickname,
                                      display_name=account.display_name)


def bb_settings(simulator: Simulator, **overrides: str) -> dict[str, str]:
    """The backend's Bitbucket sign-in against the simulator (Bitbucket is served under /bitbucket)."""
    return {
        "BITBUCKET_WEB_URL": f"{simulator.url}/bitbucket", "BITBUCKET_API_URL": f"{simulator.url}/bitbucket",
        "BITBUCKET_OAUTH_CLIENT_ID": BB_CLIENT_ID, "BITBUCKET_OAUTH_CLIENT_SECRET": BB_CLIENT_SECRET, **overrides,
    }


async def connect_workspace(db: asyncpg.Pool) -> int:
    # Connecting (token check, discovery, hook) is the tenancy branch's route; the row it writes is this.
    async with db.acquire() as conn:
        return int(await conn.fetchval(
            "INSERT INTO bitbucket_workspaces (workspace_uuid, slug) VALUES ($1::uuid, 'acme') RETURNING tenant_id",
            WORKSPACE_UUID,
        ))


def _never_asked(token: str) -> PermissionApi:
    raise AssertionError("the workspace has no token: Bitbucket is never asked")


def permissions(db: asyncpg.Pool) -> CachedPermissions:
    """The backend's own lookup. These workspaces are stored without a token, so it answers 'not known'
    (counted as `no_token`) and the author is gated, as for a contributor without write access."""
    return CachedPermissions(db, None, _never_asked, on_outcome=lambda _: None)


async def open_bitbucket_pr(db: asyncpg.Pool, public_url: str, author: BitbucketAccount = AUTHOR,
                            pr_id: int = 4) -> IngestResponse:
    event = BitbucketPullRequestEvent(
        delivery_id=str(uuid.uuid4()), event_key="pullrequest:created", workspace_uuid=WORKSPACE_UUID,
        workspace_slug="acme", repository=BitbucketRepository(uuid=REPO_UUID, full_name="acme/widgets"),
        pull_request=BitbucketPullRequest(id=pr_id, title="Fix", state="OPEN", source_commit=HEAD, author=author),
        actor=author,
    )
    answer, _ = await ingest_pull_request(db, event, permissions=permissions(db), public_url=public_url,
                                          max_attempts=8)
    return answer


async def gate_bitbucket_pr(db: asyncpg.Pool, public_url: str, author: BitbucketAccount = AUTHOR,
                            pr_id: int = 4) -> str:
    """A first-time contributor's Bitbucket PR through the real gate; the link token from its comment."""
    answer = await open_bitbucket_pr(db, public_url, author, pr_id)
    assert answer.decision is not None
    assert answer.decision.value == "GATE", answer
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT payload->>'body' FROM bot_actions WHERE challenge_id = $1 AND action_type = 'UPSERT_PR_COMMENT'",
            answer.challenge_id,
        )
    token: str = str(body).split(f"{public_url}/verify/")[1].split()[0].rstrip(").")
    return token
