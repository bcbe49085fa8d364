"""Each component's internal key opens only the routes that component calls (docs/security.md).

The receiver is the one process facing the Internet: its key may ingest events and nothing else
— not claim or settle outbox actions, not ask for the App's stored credentials. The workers' key
opens ingestion (they replay deliveries the receiver parked) and the outbox, redelivery and
reconciliation routes; the admin key only the manifest routes.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from backend_api.app import create_app
from backend_api.http.routes import ROUTES
from bot_worker.providers.github.normalize import installation_sync_event
from shared_contracts import signing
from shared_contracts.keys import Caller
from tests.conftest import ADMIN_SECRET, RECEIVER_SECRET, ROTATED_SECRET, WORKER_SECRET, backend_settings
from tests.support.ingest import INSTALLATION_PATH
from tests.support.outbox import CLAIM, install, result_path, seed_actions
from tests.support.payloads import installation_payload
from tests.support.signed import SignedClient

RESULTS = "/internal/v2/bot-actions/results"
CREDENTIALS = "/internal/v2/github-app/credentials/latest?claim=" + "c" * 32
SETUP_CLAIMS = "/internal/v2/github-app/setup-claims"
KNOWN = "/internal/v2/github/deliveries/known"
RECONCILE = "/internal/v2/github/reconcile/runs"
CLAIM_BODY = {"worker_id": "w1", "max_actions": 10, "lease_seconds": 60}


async def _get(backend: SignedClient, path_qs: str, secret: str) -> Any:
    return await backend.client.get(path_qs, headers=signing.sign(secret, "GET", path_qs, b""))


async def _refused(resp: Any, status: int = 403) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert set(body) >= {"error", "message"}
    return body


async def test_the_receivers_key_only_ingests(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    [action_id] = await seed_actions(db, 1)

    # Its own route works...
    ingest = await backend.post(INSTALLATION_PATH, _sync_body(), sign_with=RECEIVER_SECRET)
    assert ingest.status == 200, await ingest.text()

    # ...everything else answers 403 JSON, and changes nothing.
    for path, body in (
        (CLAIM, CLAIM_BODY),
        (RESULTS, {"worker_id": "w1", "results": []}),
        (result_path(action_id), {"worker_id": "w1", "attempt": 1, "outcome": "SUCCEEDED"}),
        (KNOWN, {"delivery_ids": ["d-1"]}),
        (RECONCILE, {"trigger": "cli", "worker_id": "w1"}),
        (SETUP_CLAIMS, {"claim": "c" * 32}),
        ("/internal/v2/sessions/revoke", {"github_user_id": 1}),
    ):
        refused = await _refused(await backend.post(path, body, sign_with=RECEIVER_SECRET))
        assert refused["error"] == "forbidden"
        assert "receiver" in refused["message"]
    await _refused(await _get(backend, CREDENTIALS, RECEIVER_SECRET))
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT status, lease_owner FROM bot_actions WHERE action_id = $1", action_id)
        claims = await conn.fetchval("SELECT count(*) FROM github_app_setup_claims")
    assert (row["status"], row["lease_owner"], claims) == ("PENDING", None, 0)


async def test_the_workers_key_claims_and_ingests_but_not_the_app_credentials(
    backend: SignedClient, db: asyncpg.Pool
) -> None:
    await install(backend)  # signed with the workers' key: parked deliveries are replayed by workers
    await seed_actions(db, 1)
    claimed = await backend.post(CLAIM, CLAIM_BODY, sign_with=WORKER_SECRET)
    assert claimed.status == 200
    assert len((await claimed.json())["actions"]) == 1
    await _refused(await _get(backend, CREDENTIALS, WORKER_SECRET))
    await _refused(await backend.post(SETUP_CLAIMS, {"claim": "c" * 32}, sign_with=WORKER_SECRET))


async def test_the_admin_key_only_opens_the_manifest_routes(backend: SignedClient, db: asyncpg.Pool) -> None:
    await _refused(await backend.post(CLAIM, CLAIM_BODY, sign_with=ADMIN_SECRET))
    await _refused(await backend.post(INSTALLATION_PATH, _sync_body(), sign_with=ADMIN_SECRET))
    opened = await backend.post(SETUP_CLAIMS, {"claim": "c" * 32}, sign_with=ADMIN_SECRET)
    assert opened.status == 200, await opened.text()
    missing = await _get(backend, CREDENTIALS, ADMIN_SECRET)
    assert missing.status == 404  # past the scope check: nothing registered under the claim yet


async def test_an_unknown_key_is_401_and_a_second_key_of_each_component_still_verifies(
    database_url: str, db: asyncpg.Pool, aiohttp_client: Any
) -> None:
    new_receiver, old_receiver = "r-new-" + "0123456789abcdef" * 3, RECEIVER_SECRET
    settings = backend_settings(database_url, PRGATE_RECEIVER_SECRETS=f"{new_receiver},{old_receiver}")
    backend = SignedClient(await aiohttp_client(create_app(settings)), WORKER_SECRET)
    for key in (new_receiver, old_receiver):  # a receiver mid-rotation signs with either
        resp = await backend.post(INSTALLATION_PATH, _sync_body(), sign_with=key)
        assert resp.status == 200, await resp.text()
        await _refused(await backend.post(CLAIM, CLAIM_BODY, sign_with=key))
    rotated = await backend.post(CLAIM, CLAIM_BODY, sign_with=ROTATED_SECRET)  # the workers' second key
    assert rotated.status == 200
    body = await _refused(await backend.post(CLAIM, CLAIM_BODY, sign_with="x-" + "fedcba9876543210" * 3), 401)
    assert body["error"] == "unauthorized"


def test_every_signed_route_names_its_callers_and_the_receiver_only_ingests() -> None:
    signed = [route for route in ROUTES if route.path.startswith("/internal/")]
    assert signed
    assert all(route.callers for route in signed)
    receiver_routes = {route.path for route in signed if Caller.RECEIVER in route.callers}
    assert receiver_routes
    assert all(path.startswith("/internal/v2/github/events/") for path in receiver_routes)
    admin_routes = {route.path for route in signed if Caller.ADMIN in route.callers}
    assert admin_routes == {SETUP_CLAIMS, CREDENTIALS.partition("?")[0], "/internal/v2/sessions/revoke",
                            "/internal/v2/api-tokens", "/internal/v2/api-tokens/revoke"}
    assert not any(Caller.WORKER in route.callers for route in signed if route.path in admin_routes)


def _sync_body() -> dict[str, Any]:
    event = installation_sync_event(str(uuid.uuid4()), "installation", installation_payload("created"))
    return event.model_dump(mode="json")
