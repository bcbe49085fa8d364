"""Every endpoint refuses bad input with a JSON 4xx and writes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from bot_worker.providers.github.normalize import pull_request_event
from tests.support.ingest import INSTALLATION_PATH, PR_PATH, send_installation
from tests.support.outbox import CLAIM, RESULTS, result_path, seed_actions
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.signed import SignedClient

# Reconciliation (docs/reconcile.md): start, snapshots, finish.
RECONCILE_PATHS = [f"/internal/v2/github/reconcile/{p}" for p in ("runs", "installation", "pull-requests",
                                                                   "runs/1/finish")]
INTERNAL_PATHS = [PR_PATH, INSTALLATION_PATH, CLAIM, result_path(1), RESULTS, *RECONCILE_PATHS]


def _valid_pr_body() -> bytes:
    return pull_request_event("d-1", pull_request_payload("opened")).model_dump_json().encode()


@pytest.fixture
async def seeded(backend: SignedClient, db: asyncpg.Pool) -> SignedClient:
    await send_installation(backend, "installation", installation_payload("created"))
    await seed_actions(db, 1)
    return backend


async def _assert_error(resp: object, status: int, error: str | None = None) -> dict[str, object]:
    assert resp.status == status, (resp.status, await resp.text())  # type: ignore[attr-defined]
    assert resp.content_type == "application/json"  # type: ignore[attr-defined]
    body: dict[str, object] = await resp.json()  # type: ignore[attr-defined]
    assert isinstance(body["message"], str)
    if error:
        assert body["error"] == error
    return body


@pytest.mark.parametrize("path", INTERNAL_PATHS)
async def test_missing_signature_is_401(seeded: SignedClient, db: asyncpg.Pool, path: str) -> None:
    before = await snapshot(db)
    resp = await seeded.client.post(path, data=_valid_pr_body(), headers={"Content-Type": "application/json"})
    await _assert_error(resp, 401, "unauthorized")
    assert await snapshot(db) == before


@pytest.mark.parametrize("path", INTERNAL_PATHS)
async def test_wrong_secret_is_401(seeded: SignedClient, db: asyncpg.Pool, path: str) -> None:
    before = await snapshot(db)
    resp = await seeded.post(path, raw=_valid_pr_body(), sign_with="not-the-secret")
    body = await _assert_error(resp, 401)
    assert body["message"] == "bad signature"
    assert await snapshot(db) == before


async def test_any_active_secret_verifies(seeded: SignedClient) -> None:
    from tests.conftest import ROTATED_SECRET

    resp = await seeded.post(CLAIM, {"worker_id": "w", "max_actions": 1}, sign_with=ROTATED_SECRET)
    assert resp.status == 200


async def test_tampered_body_is_401(seeded: SignedClient, db: asyncpg.Pool) -> None:
    from shared_contracts import signing

    before = await snapshot(db)
    body = _valid_pr_body()
    headers = signing.sign(seeded.secret, "POST", PR_PATH, body)
    tampered = body.replace(b'"newcomer"', b'"intruder"')
    resp = await seeded.client.post(PR_PATH, data=tampered, headers={**headers, "Content-Type": "application/json"})
    await _assert_error(resp, 401)
    assert await snapshot(db) == before


async def test_signature_for_another_path_is_401(seeded: SignedClient) -> None:
    from shared_contracts import signing

    body = json.dumps({"worker_id": "w", "max_actions": 1}).encode()
    headers = signing.sign(seeded.secret, "POST", "/internal/v2/bot-actions/claim?x=1", body)
    resp = await seeded.client.post(CLAIM, data=body, headers={**headers, "Content-Type": "application/json"})
    await _assert_error(resp, 401)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
async def test_stale_or_future_timestamp_is_401(seeded: SignedClient, db: asyncpg.Pool, skew: int) -> None:
    before = await snapshot(db)
    resp = await seeded.post(PR_PATH, raw=_valid_pr_body(), now=time.time() + skew)
    body = await _assert_error(resp, 401)
    assert "window" in str(body["message"])
    assert await snapshot(db) == before


async def test_replayed_nonce_is_401_and_changes_nothing(seeded: SignedClient, db: asyncpg.Pool) -> None:
    nonce = "ab" * 16
    first = await seeded.post(CLAIM, {"worker_id": "w", "max_actions": 1}, nonce=nonce)
    assert first.status == 200
    claimed = await snapshot(db)
    replay = await seeded.post(CLAIM, {"worker_id": "w", "max_actions": 1}, nonce=nonce)
    body = await _assert_error(replay, 401)
    assert body["message"] == "replayed nonce"
    assert await snapshot(db) == claimed


async def test_one_nonce_sent_concurrently_is_served_once(seeded: SignedClient, db: asyncpg.Pool) -> None:
    # Concurrent nonces share one INSERT (backend_api/auth/nonces.py): a repeat inside a batch is a replay too.
    nonce = "cd" * 16
    responses = await asyncio.gather(*(
        seeded.post(CLAIM, {"worker_id": "w", "max_actions": 1}, nonce=nonce) for _ in range(20)
    ))
    assert sorted(r.status for r in responses) == [200] + [401] * 19
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM internal_nonces WHERE nonce = $1", nonce) == 1
        claimed = await conn.fetchval("SELECT count(*) FROM bot_actions WHERE status = 'CLAIMED'")
    assert claimed == 1  # the one served request claimed; the replays did nothing


async def test_distinct_nonces_sent_concurrently_are_all_served(seeded: SignedClient) -> None:
    responses = await asyncio.gather(*(
        seeded.post(CLAIM, {"worker_id": "w", "max_actions": 1}, nonce=f"{i:032x}") for i in range(30)
    ))
    assert [r.status for r in responses] == [200] * 30


@pytest.mark.parametrize("path", INTERNAL_PATHS)
@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"a": 1'])
async def test_malformed_json_is_400(seeded: SignedClient, db: asyncpg.Pool, path: str, raw: bytes) -> None:
    before = await snapshot(db)
    resp = await seeded.post(path, raw=raw)
    await _assert_error(resp, 400, "malformed_json")
    assert await snapshot(db) == before


@pytest.mark.parametrize("path", INTERNAL_PATHS)
@pytest.mark.parametrize("raw", [b"[]", b"42", b"null", b'"text"'])
async def test_json_that_is_not_an_object_is_422(seeded: SignedClient, db: asyncpg.Pool, path: str, raw: bytes) -> None:
    before = await snapshot(db)
    resp = await seeded.post(path, raw=raw)
    await _assert_error(resp, 422, "validation_error")
    assert await snapshot(db) == before


async def test_schema_violation_is_422_with_field_errors(seeded: SignedClient, db: asyncpg.Pool) -> None:
    before = await snapshot(db)
    body = json.loads(_valid_pr_body())
    del body["pull_request"]["author"]
    body["installation_id"] = "not-a-number"
    resp = await seeded.post(PR_PATH, body)
    payload = await _assert_error(resp, 422, "validation_error")
    locs = {tuple(d["loc"]) for d in payload["details"]}  # type: ignore[union-attr, index]
    assert ("pull_request", "author") in locs
    assert ("installation_id",) in locs
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "body",
    [
        {"worker_id": "w", "max_actions": 0},
        {"worker_id": "w", "max_actions": 101},
        {"worker_id": "", "max_actions": 1},
        {"max_actions": 1},
        {"worker_id": "w", "lease_seconds": 1},
    ],
)
async def test_claim_bounds_are_422(seeded: SignedClient, db: asyncpg.Pool, body: dict[str, object]) -> None:
    before = await snapshot(db)
    await _assert_error(await seeded.post(CLAIM, body), 422)
    assert await snapshot(db) == before


async def test_bad_outcome_is_422(seeded: SignedClient, db: asyncpg.Pool) -> None:
    before = await snapshot(db)
    resp = await seeded.post(result_path(1), {"worker_id": "w", "attempt": 1, "outcome": "MAYBE"})
    await _assert_error(resp, 422)
    assert await snapshot(db) == before


async def test_oversized_body_is_413(seeded: SignedClient, db: asyncpg.Pool) -> None:
    before = await snapshot(db)
    huge = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    resp = await seeded.post(PR_PATH, raw=huge)
    await _assert_error(resp, 413, "payload_too_large")
    assert await snapshot(db) == before


async def test_wrong_content_type_is_415(seeded: SignedClient, db: asyncpg.Pool) -> None:
    before = await snapshot(db)
    resp = await seeded.post(PR_PATH, raw=_valid_pr_body(), content_type="text/plain")
    await _assert_error(resp, 415)
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/internal/v2/nope", 401),  # unsigned internal paths are refused before routing
        ("GET", "/api/v1/repos/abc/github-app-status", 404),
        ("GET", "/api/v1/repos/99999999999999999999999/github-app-status", 404),
        ("DELETE", "/healthz", 405),
    ],
)
async def test_unknown_routes_are_json_errors(seeded: SignedClient, method: str, path: str, status: int) -> None:
    resp = await seeded.client.request(method, path)
    await _assert_error(resp, status)


async def test_signed_unknown_internal_route_is_404(seeded: SignedClient) -> None:
    resp = await seeded.post("/internal/v2/nope", {"x": 1})
    await _assert_error(resp, 404, "not_found")


async def test_result_path_with_non_numeric_id_is_404(seeded: SignedClient) -> None:
    resp = await seeded.post("/internal/v2/bot-actions/abc/result", {"worker_id": "w", "attempt": 1,
                                                                   "outcome": "SUCCEEDED"})
    await _assert_error(resp, 404)


@pytest.mark.parametrize("raw_id", ["\u00b2", "\u0663", "0", "9223372036854775808", "1" * 25])
async def test_path_ids_that_are_not_storable_positive_integers_are_404(
    seeded: SignedClient, db: asyncpg.Pool, raw_id: str
) -> None:
    # '²'.isdigit() is true but int('²') raises: each of these was a 500 once.
    before = await snapshot(db)
    resp = await seeded.post(f"/internal/v2/bot-actions/{quote(raw_id)}/result",
                             {"worker_id": "w", "attempt": 1, "outcome": "SUCCEEDED"})
    await _assert_error(resp, 404, "not_found")
    resp = await seeded.client.get(f"/api/v1/repos/{raw_id}/github-app-status")
    await _assert_error(resp, 404, "not_found")
    assert await snapshot(db) == before


@pytest.mark.parametrize(("path", "mutate"), [
    (PR_PATH, lambda body: {**body, "installation_id": 2**64}),  # past BIGINT
    (PR_PATH, lambda body: {**body, "repository": {**body["repository"], "full_name": "octo-org/wid\u0000gets"}}),
    ("/internal/v2/github/deliveries/known", lambda _body: {"delivery_ids": ["ok", "nul\u0000"]}),
])
async def test_values_postgresql_cannot_store_are_422_and_write_nothing(
    seeded: SignedClient, db: asyncpg.Pool, path: str, mutate: Any
) -> None:
    # Valid JSON and valid for the model, but asyncpg would raise on them (a 500 before).
    before = await snapshot(db)
    resp = await seeded.post(path, mutate(json.loads(_valid_pr_body())))
    body = await _assert_error(resp, 422, "validation_error")
    assert body["details"], body
    assert await snapshot(db) == before


async def test_installation_payload_with_bad_repository_is_422_and_writes_nothing(
    seeded: SignedClient, db: asyncpg.Pool
) -> None:
    before = await snapshot(db)
    body = {
        "delivery_id": "bad-1", "event": "installation_repositories", "action": "added",
        "installation": {"id": 1001, "account": {"id": 1, "login": "octo-org", "type": "Organization"}},
        "repositories_added": [{"id": 1, "full_name": "ok/repo"}, {"id": 2, "full_name": "no-slash"}],
    }
    resp = await seeded.post(INSTALLATION_PATH, body)
    await _assert_error(resp, 422)
    assert await snapshot(db) == before
