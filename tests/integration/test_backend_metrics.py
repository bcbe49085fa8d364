"""The backend's /metrics: what ingests, claims, results, signatures and maintenance do to it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from backend_api.maintenance import run_forever
from backend_api.metrics import BackendMetrics
from backend_api.store.db import create_pool
from shared_contracts import signing
from tests.conftest import backend_settings
from tests.support.ingest import send_installation, send_pr
from tests.support.outbox import CLAIM, install, result_path, seed_actions
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

RESULT_ROUTE = "/internal/v2/bot-actions/{action_id}/result"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(backend: SignedClient) -> Samples:
    resp = await backend.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def claim_body(max_actions: int = 10) -> dict[str, Any]:
    return {"worker_id": "w1", "max_actions": max_actions, "lease_seconds": 60, "wait_seconds": 0}


def result_body(attempt: int, outcome: str = "SUCCEEDED", **extra: Any) -> dict[str, Any]:
    return {"worker_id": "w1", "attempt": attempt, "outcome": outcome, **extra}


async def test_metrics_page_needs_no_signature_and_starts_at_zero(backend: SignedClient) -> None:
    samples = await scrape(backend)
    assert value(samples, "backend_outbox_actions", state="pending") == 0
    assert value(samples, "backend_outbox_oldest_pending_age_seconds") == 0
    assert not [k for k in samples if k[0] == "backend_webhook_ingests_total"]


async def test_ingest_claim_and_result_move_the_counters(backend: SignedClient, db: asyncpg.Pool) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    gated = await send_pr(backend, pull_request_payload("opened"), "pr-1")
    assert gated["decision"] == "GATE"
    await send_pr(backend, pull_request_payload("opened"), "pr-1")  # GitHub redelivers it

    samples = await scrape(backend)
    ingests = "backend_webhook_ingests_total"
    assert value(samples, ingests, event="installation", status="ACCEPTED", decision="none") == 1
    assert value(samples, ingests, event="pull_request", status="ACCEPTED", decision="GATE") == 1
    assert value(samples, ingests, event="pull_request", status="DUPLICATE", decision="GATE") == 1
    enqueued = "backend_actions_enqueued_total"
    assert value(samples, enqueued, action_type="UPSERT_PR_COMMENT", source="webhook") == 1
    assert value(samples, enqueued, action_type="SET_COMMIT_STATUS", source="webhook") == 1
    # Both actions wait, due now.
    assert value(samples, "backend_outbox_actions", state="pending") == 2
    assert value(samples, "backend_outbox_actions", state="pending_due") == 2

    # Per-PR order: the comment first, then the status.
    [comment] = (await backend.post_json(CLAIM, claim_body()))["actions"]
    assert comment["action_type"] == "UPSERT_PR_COMMENT"
    samples = await scrape(backend)
    assert value(samples, "backend_outbox_actions", state="leased") == 1
    assert value(samples, "backend_outbox_actions", state="pending") == 1
    await backend.post_json(result_path(comment["action_id"]), result_body(comment["attempt"]))
    [status] = (await backend.post_json(CLAIM, claim_body()))["actions"]
    await backend.post_json(
        result_path(status["action_id"]),
        result_body(status["attempt"], "RETRYABLE_FAILURE", retry_after_seconds=3600, error="503 from GitHub"),
    )
    # A second report of a finished attempt, and a report for an action that does not exist.
    await backend.post_json(result_path(comment["action_id"]), result_body(comment["attempt"]), expect=409)
    await backend.post_json(result_path(999_999), result_body(1, "FAILED"), expect=404)
    # Nothing claimable now: the status is backing off.
    assert (await backend.post_json(CLAIM, claim_body()))["actions"] == []

    samples = await scrape(backend)
    assert value(samples, "backend_claim_requests_total", result="actions") == 2
    assert value(samples, "backend_claim_requests_total", result="empty") == 1
    handed = "backend_actions_handed_out_total"
    assert value(samples, handed, action_type="UPSERT_PR_COMMENT") == 1
    assert value(samples, handed, action_type="SET_COMMIT_STATUS") == 1
    results = "backend_action_results_total"
    assert value(samples, results, outcome="SUCCEEDED", status="DONE") == 1
    assert value(samples, results, outcome="RETRYABLE_FAILURE", status="PENDING") == 1
    assert value(samples, results, outcome="SUCCEEDED", status="stale_lease") == 1
    assert value(samples, results, outcome="FAILED", status="unknown_action") == 1
    assert value(samples, "backend_outbox_actions", state="pending") == 1
    assert value(samples, "backend_outbox_actions", state="pending_due") == 0

    # HTTP metrics carry the route template, never a path with an id in it.
    requests = "backend_http_requests_total"
    assert value(samples, requests, route=RESULT_ROUTE, method="POST", status="200") == 2
    assert value(samples, requests, route=RESULT_ROUTE, method="POST", status="409") == 1
    assert value(samples, requests, route=RESULT_ROUTE, method="POST", status="404") == 1
    assert value(samples, requests, route=CLAIM, method="POST", status="200") == 3
    templates = {r.canonical for r in backend.client.app.router.resources()}
    routes = {dict(labels)["route"] for name, labels in samples if name == requests}
    assert routes <= templates, routes - templates
    assert value(samples, "backend_http_request_duration_seconds_count", route=CLAIM, method="POST") == 3


async def test_unknown_paths_are_one_label(backend: SignedClient) -> None:
    for path in ("/nope/1", "/nope/2", "/api/v1/repos/x/y/z"):
        assert (await backend.client.get(path)).status == 404
    samples = await scrape(backend)
    assert value(samples, "backend_http_requests_total", route="unmatched", method="GET", status="404") == 3


async def test_signature_failures_are_counted_by_reason(backend: SignedClient, db: asyncpg.Pool) -> None:
    body = claim_body()
    assert (await backend.client.post(CLAIM, json=body)).status == 401
    assert (await backend.post(CLAIM, body, sign_with="not-the-secret")).status == 401
    assert (await backend.post(CLAIM, body, now=time.time() - 3600)).status == 401
    nonce = "ab" * 16
    assert (await backend.post(CLAIM, body, nonce=nonce)).status == 200
    assert (await backend.post(CLAIM, body, nonce=nonce)).status == 401
    assert (await backend.post(CLAIM, body, headers={signing.NONCE_HEADER: "nothex"})).status == 401

    samples = await scrape(backend)
    failures = "backend_internal_signature_failures_total"
    for reason in ("missing_headers", "bad_signature", "stale_timestamp", "replayed_nonce", "malformed"):
        assert value(samples, failures, reason=reason) == 1, reason
    assert value(samples, "backend_claim_requests_total", result="empty") == 1


async def test_outbox_gauges_reflect_the_database(backend: SignedClient, db: asyncpg.Pool) -> None:
    await install(backend)
    ids = await seed_actions(db, 7)
    async with db.acquire() as conn:
        # 0, 1: pending and due (0 created an hour ago); 2: pending, backing off; 3: leased;
        # 4, 5: failed; 6: done.
        await conn.execute("UPDATE bot_actions SET created_at = now() - interval '1 hour' WHERE action_id = $1", ids[0])
        await conn.execute(
            "UPDATE bot_actions SET next_attempt_at = now() + interval '10 minutes' WHERE action_id = $1", ids[2]
        )
        await conn.execute(
            """UPDATE bot_actions SET status = 'CLAIMED', lease_owner = 'w', attempt = 1,
                      next_attempt_at = now() + interval '1 minute' WHERE action_id = $1""",
            ids[3],
        )
        await conn.execute("UPDATE bot_actions SET status = 'FAILED' WHERE action_id = ANY($1::bigint[])", ids[4:6])
        await conn.execute("UPDATE bot_actions SET status = 'DONE' WHERE action_id = $1", ids[6])
        db_age = await conn.fetchval(
            "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM bot_actions WHERE status = 'PENDING'"
        )
    samples = await scrape(backend)
    states = {
        s: value(samples, "backend_outbox_actions", state=s) for s in ("pending", "pending_due", "leased", "failed")
    }
    assert states == {"pending": 3, "pending_due": 2, "leased": 1, "failed": 2}
    age = value(samples, "backend_outbox_oldest_pending_age_seconds")
    assert age >= 3600
    assert age >= db_age  # sampled after the query above, on the same clock

    async with db.acquire() as conn:
        await conn.execute("UPDATE bot_actions SET status = 'DONE' WHERE status IN ('PENDING', 'CLAIMED')")
    samples = await scrape(backend)
    assert value(samples, "backend_outbox_actions", state="pending") == 0
    assert value(samples, "backend_outbox_actions", state="leased") == 0
    assert value(samples, "backend_outbox_oldest_pending_age_seconds") == 0


async def test_verification_form_success_is_counted(backend: SignedClient, db: asyncpg.Pool) -> None:
    from backend_api.auth.session import SESSION_COOKIE, csrf_scope_for_challenge
    from backend_api.keys import SESSIONS

    await send_installation(backend, "installation", installation_payload("created"))
    gated = await send_pr(backend, pull_request_payload("opened"))
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT payload->>'body' FROM bot_actions WHERE action_type = 'UPSERT_PR_COMMENT' AND challenge_id = $1",
            gated["challenge_id"],
        )
    token = body.split("http://prgate.test/verify/")[1].split()[0]
    codec = backend.client.app[SESSIONS]
    session, cookie = codec.issue(9001, "newcomer", time.time())
    form = {"csrf": codec.csrf_token(session, csrf_scope_for_challenge(gated["challenge_id"])), "accept": "yes"}
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    first = await backend.client.post(f"/verify/{token}", data=form, headers=headers)
    assert first.status == 200, await first.text()
    again = await backend.client.post(f"/verify/{token}", data=form, headers=headers)
    assert again.status == 409

    samples = await scrape(backend)
    assert value(samples, "backend_verifications_total") == 1
    assert value(samples, "backend_http_requests_total", route="/verify/{token}", method="POST", status="409") == 1


async def _first_runs(metrics: BackendMetrics, pool: asyncpg.Pool, runs: int = 1) -> None:
    """Run the maintenance loop until it has finished `runs` runs, then stop it."""
    task = asyncio.create_task(run_forever(pool, metrics, 0.01, public_url="http://prgate.test", max_attempts=8))
    try:
        for _ in range(3000):
            count = metrics.registry.get_sample_value("backend_maintenance_run_duration_seconds_count")
            if count is not None and count >= runs:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("maintenance did not run")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_maintenance_runs_timeouts_and_errors_are_counted(
    backend: SignedClient, db: asyncpg.Pool, database_url: str
) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    await send_pr(backend, pull_request_payload("opened"))
    async with db.acquire() as conn:
        await conn.execute("UPDATE challenges SET deadline_at = now() - interval '1 second'")
    metrics = BackendMetrics(CollectorRegistry())
    await _first_runs(metrics, db)
    registry = metrics.registry
    assert registry.get_sample_value("backend_challenges_timed_out_total") == 1
    assert registry.get_sample_value("backend_maintenance_errors_total") == 0

    # A database without prgate's tables on the search path: every run fails, and the loop goes on.
    broken = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with broken.acquire() as conn:
            await conn.execute("SET search_path TO no_such_schema")
        await _first_runs(metrics, broken, runs=4)
    finally:
        await broken.close()
    errors = registry.get_sample_value("backend_maintenance_errors_total")
    assert errors is not None
    assert errors >= 2
    assert registry.get_sample_value("backend_challenges_timed_out_total") == 1


async def test_outbox_gauges_are_nan_when_the_database_is_gone(database_url: str, aiohttp_client: Any) -> None:
    from backend_api.app import create_app
    from backend_api.keys import DB_POOL

    client = await aiohttp_client(create_app(backend_settings(database_url)))
    await client.app[DB_POOL].close()
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'backend_outbox_actions{state="pending"} NaN' in text
