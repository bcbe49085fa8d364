"""The GitHub webhook receiver against the real backend (real PostgreSQL) and real Redis.

Real GitHub payloads (tests/fixtures/github, rewritten by tests.support.payloads)
are signed with the webhook secret and sent with GitHub's headers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from backend_api.app import create_app
from bot_worker.providers.github.webhook import MAX_BODY_BYTES
from bot_worker.settings import BotSettings
from bot_worker.webhooks.app import create_receiver_app
from prgate.simulator.github.webhooks import webhook_headers
from tests.conftest import INTERNAL_ENV, INTERNAL_SECRET, backend_settings
from tests.support.payloads import (
    fixture,
    installation_payload,
    installation_repositories_payload,
    pull_request_payload,
)
from tests.support.webhooks import (
    WEBHOOK_SECRET,
    TestQueue,
    bot_settings,
    fetch,
    fresh_queue,
    metric,
    post_webhook,
    stub_backend,
)

# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
async def backend_url(db: asyncpg.Pool, database_url: str, aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_app(backend_settings(database_url)))
    return str(server.make_url("/"))


@pytest.fixture
async def receiver(
    backend_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any
) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(backend_url, redis_url, queue.name))
    )
    return client


@pytest.fixture
async def installed(receiver: TestClient[Any, Any]) -> TestClient[Any, Any]:
    resp = await post_webhook(receiver, "installation", installation_payload("created"))
    assert resp.status == 200, await resp.text()
    return receiver


# ---- forwarded events ----------------------------------------------------------------------------


async def test_installation_then_pull_request_are_forwarded(
    receiver: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    install_id, pr_id = str(uuid.uuid4()), str(uuid.uuid4())
    resp = await post_webhook(receiver, "installation", installation_payload("created"), install_id)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert (body["status"], body["delivery_id"]) == ("ACCEPTED", install_id)
    [inst] = await fetch(db, "SELECT * FROM github_installations")
    assert (inst["installation_id"], inst["account_login"], inst["status"]) == (1001, "octo-org", "ACTIVE")

    resp = await post_webhook(receiver, "pull_request", pull_request_payload("opened", number=17), pr_id)
    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["decision"], body["delivery_id"]) == ("ACCEPTED", "GATE", pr_id)
    [challenge] = await fetch(db, "SELECT * FROM challenges")
    assert body["challenge_id"] == challenge["challenge_id"]
    assert (challenge["pr_number"], challenge["author_login"], challenge["status"]) == (17, "newcomer", "PENDING")
    action, status = await fetch(db, "SELECT * FROM bot_actions ORDER BY action_id")
    assert body["enqueued_action_ids"] == [action["action_id"], status["action_id"]]
    assert (action["action_type"], action["repo_full_name"]) == ("UPSERT_PR_COMMENT", "octo-org/widgets")
    assert (status["action_type"], status["payload"]["state"]) == ("SET_COMMIT_STATUS", "pending")
    deliveries = await fetch(db, "SELECT delivery_id, event_name FROM webhook_deliveries ORDER BY received_at")
    assert [(d["delivery_id"], d["event_name"]) for d in deliveries] == [
        (install_id, "installation"), (pr_id, "pull_request"),
    ]
    # Forwarded synchronously: nothing went to the queue.
    assert await queue.job_ids() == set()


async def test_installation_repositories_added_and_removed(installed: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    added = installation_repositories_payload("added", repos=[(5002, "octo-org/gears")])
    resp = await post_webhook(installed, "installation_repositories", added)
    assert resp.status == 200
    assert (await resp.json())["status"] == "ACCEPTED"
    removed = installation_repositories_payload("removed", repos=[(5001, "octo-org/widgets")])
    resp = await post_webhook(installed, "installation_repositories", removed)
    assert resp.status == 200
    assert (await resp.json())["status"] == "ACCEPTED"
    members = await fetch(
        db, "SELECT repo_id, full_name, removed_at IS NULL AS current FROM github_installation_repositories"
    )
    assert {(m["repo_id"], m["full_name"], m["current"]) for m in members} == {
        (5001, "octo-org/widgets", False), (5002, "octo-org/gears", True),
    }


async def test_redelivery_is_answered_duplicate_by_the_backend(
    installed: TestClient[Any, Any], db: asyncpg.Pool
) -> None:
    delivery_id = str(uuid.uuid4())
    first = await post_webhook(installed, "pull_request", pull_request_payload("opened"), delivery_id)
    again = await post_webhook(installed, "pull_request", pull_request_payload("opened"), delivery_id)
    assert first.status == again.status == 200
    first_body, again_body = await first.json(), await again.json()
    assert first_body["status"] == "ACCEPTED"
    assert again_body["status"] == "DUPLICATE"
    assert again_body["challenge_id"] == first_body["challenge_id"]
    assert again_body["enqueued_action_ids"] == []
    assert len(await fetch(db, "SELECT * FROM challenges")) == 1
    assert len(await fetch(db, "SELECT * FROM bot_actions")) == 2  # one comment, one status
    assert await metric(installed, "webhooks_forwarded_total", event="pull_request", outcome="duplicate") == 1


async def test_form_encoded_delivery_is_accepted(installed: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    """Repository webhooks may be configured as `application/x-www-form-urlencoded` (`payload=<json>`)."""
    from urllib.parse import urlencode

    raw = urlencode({"payload": json.dumps(pull_request_payload("opened", number=3))}).encode()
    resp = await post_webhook(
        installed, "pull_request", None, raw=raw,
        replace={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["decision"] == "GATE"
    assert [c["pr_number"] for c in await fetch(db, "SELECT pr_number FROM challenges")] == [3]


# ---- answered here, not forwarded ----------------------------------------------------------------


async def test_ping_is_answered_pong(receiver: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    resp = await post_webhook(receiver, "ping", fixture("ping.none.0.json"))
    assert resp.status == 200
    assert await resp.json() == {"status": "pong"}
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == []


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("issue_comment", fixture("issue_comment.created.0.json")),
        ("push", {"ref": "refs/heads/main", "installation": {"id": 1001}, "commits": []}),
    ],
)
async def test_other_events_are_ignored_and_not_forwarded(
    installed: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue, event: str, payload: dict[str, Any]
) -> None:
    before = await fetch(db, "SELECT * FROM webhook_deliveries")
    resp = await post_webhook(installed, event, payload)
    assert resp.status == 202
    assert await resp.json() == {"status": "ignored"}
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == before
    assert await queue.job_ids() == set()
    assert await metric(installed, "webhooks_received_total", event=event) == 1


# ---- refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "replace"),
    [
        pytest.param(("X-Hub-Signature-256",), {}, id="sha1-only"),
        pytest.param(("X-Hub-Signature-256", "X-Hub-Signature"), {}, id="missing"),
        pytest.param((), {"X-Hub-Signature-256": "sha256=" + "0" * 64}, id="wrong"),
        pytest.param((), {"X-Hub-Signature-256": "sha256=zz"}, id="garbage"),
        pytest.param((), {"X-Hub-Signature-256": "sha256=é"}, id="non-ascii"),
    ],
)
async def test_missing_or_bad_signature_is_401(
    receiver: TestClient[Any, Any], db: asyncpg.Pool, drop: tuple[str, ...], replace: dict[str, str]
) -> None:
    resp = await post_webhook(receiver, "installation", installation_payload("created"), drop=drop, replace=replace)
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "unauthorized"
    assert "X-Hub-Signature-256" in body["message"]
    assert await fetch(db, "SELECT * FROM github_installations") == []
    assert await metric(receiver, "webhook_signature_failures_total") == 1


async def test_signature_with_another_secret_is_401(receiver: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    resp = await post_webhook(receiver, "installation", installation_payload("created"), secret="not-the-secret")
    assert resp.status == 401
    assert await fetch(db, "SELECT * FROM github_installations") == []


async def test_signature_of_another_body_is_401(receiver: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    signed = json.dumps(installation_payload("created")).encode()
    tampered = json.dumps(installation_payload("created", account_login="evil-org")).encode()
    headers = webhook_headers(WEBHOOK_SECRET, "installation", signed, str(uuid.uuid4()))
    resp = await receiver.post("/webhooks/github", data=tampered, headers=headers)
    assert resp.status == 401
    assert await fetch(db, "SELECT * FROM github_installations") == []


async def test_empty_configured_secret_refuses_everything(
    backend_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, db: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="bot_worker")
    settings = bot_settings(backend_url, redis_url, queue.name, github_webhook_secret=SecretStr(""))
    client = await aiohttp_client(create_receiver_app(settings))
    assert [r.message for r in caplog.records if r.levelno == logging.ERROR] == [
        "GITHUB_WEBHOOK_SECRET is empty: every webhook will be refused with 401"
    ]
    for secret in ("", WEBHOOK_SECRET):
        resp = await post_webhook(client, "installation", installation_payload("created"), secret=secret)
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    assert await fetch(db, "SELECT * FROM github_installations") == []


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_github_headers_are_400(receiver: TestClient[Any, Any], db: asyncpg.Pool, header: str) -> None:
    resp = await post_webhook(receiver, "installation", installation_payload("created"), drop=(header,))
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request"
    assert header in body["message"]
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[" * 100_000])
async def test_malformed_json_is_400(receiver: TestClient[Any, Any], raw: bytes) -> None:
    resp = await post_webhook(receiver, "pull_request", None, raw=raw)
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed_json"


async def test_json_that_is_not_an_object_is_422(receiver: TestClient[Any, Any]) -> None:
    resp = await post_webhook(receiver, "pull_request", [1, 2, 3])
    assert resp.status == 422
    assert (await resp.json())["error"] == "validation_error"


async def test_pull_request_without_user_is_422_with_field_errors(
    installed: TestClient[Any, Any], db: asyncpg.Pool, queue: TestQueue
) -> None:
    payload = pull_request_payload("opened")
    del payload["pull_request"]["user"]
    resp = await post_webhook(installed, "pull_request", payload)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "validation_error"
    assert any("author" in detail["loc"] for detail in body["details"]), body
    assert await fetch(db, "SELECT * FROM webhook_deliveries WHERE event_name = 'pull_request'") == []
    assert await queue.job_ids() == set()
    assert await metric(installed, "webhooks_forwarded_total", event="pull_request", outcome="rejected") == 1


async def test_payload_without_installation_is_422(receiver: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    payload = pull_request_payload("opened")
    del payload["installation"]
    resp = await post_webhook(receiver, "pull_request", payload)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "not_forwardable"
    assert "installation" in body["message"]
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: p.update(repositories_added=7), id="repositories-not-a-list"),
        pytest.param(lambda p: p.update(installation="1001"), id="installation-not-an-object"),
        pytest.param(lambda p: p.update(action=["added"]), id="action-not-a-string"),
    ],
)
async def test_wrongly_typed_fields_are_422_never_500(receiver: TestClient[Any, Any], mangle: Any) -> None:
    payload = installation_repositories_payload("added", repos=[(5002, "octo-org/gears")])
    mangle(payload)
    resp = await post_webhook(receiver, "installation_repositories", payload)
    assert resp.status == 422
    assert (await resp.json())["error"] in {"validation_error", "not_forwardable"}


async def test_oversized_body_is_413(receiver: TestClient[Any, Any], db: asyncpg.Pool) -> None:
    raw = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    resp = await post_webhook(receiver, "pull_request", None, raw=raw)
    assert resp.status == 413
    body = await resp.json()
    assert body["error"] == "payload_too_large"
    assert await fetch(db, "SELECT * FROM webhook_deliveries") == []


async def test_unknown_route_and_method_are_json(receiver: TestClient[Any, Any]) -> None:
    resp = await receiver.get("/webhooks/github")
    assert resp.status == 405
    assert (await resp.json())["error"] == "method_not_allowed"
    resp = await receiver.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_backend_4xx_is_returned_as_is_and_not_queued(
    redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    refusal = {"error": "conflict", "message": "the backend refuses this one"}
    server = await aiohttp_server(stub_backend(409, refusal))
    client = await aiohttp_client(create_receiver_app(bot_settings(str(server.make_url("/")), redis_url, queue.name)))
    resp = await post_webhook(client, "installation", installation_payload("created"))
    assert resp.status == 409
    assert await resp.json() == refusal
    assert await queue.job_ids() == set()
    assert await metric(client, "webhooks_forwarded_total", event="installation", outcome="rejected") == 1


# ---- operations ----------------------------------------------------------------------------------


async def test_healthz_and_readyz(receiver: TestClient[Any, Any]) -> None:
    resp = await receiver.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await receiver.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "checks": {"redis": "ok", "backend": "ok"}}


async def test_metrics_count_deliveries_outcomes_and_signature_failures(receiver: TestClient[Any, Any]) -> None:
    assert await metric(receiver, "webhooks_received_total", event="installation") == 0
    assert await metric(receiver, "forward_latency_seconds_count") == 0
    await post_webhook(receiver, "installation", installation_payload("created"))
    await post_webhook(receiver, "pull_request", pull_request_payload("opened"))
    await post_webhook(receiver, "pull_request", pull_request_payload("opened"), secret="wrong")
    await post_webhook(receiver, "ping", fixture("ping.none.0.json"))
    assert await metric(receiver, "webhooks_received_total", event="installation") == 1
    assert await metric(receiver, "webhooks_received_total", event="pull_request") == 1
    assert await metric(receiver, "webhooks_received_total", event="ping") == 1
    assert await metric(receiver, "webhooks_forwarded_total", event="installation", outcome="accepted") == 1
    assert await metric(receiver, "webhooks_forwarded_total", event="pull_request", outcome="accepted") == 1
    assert await metric(receiver, "webhook_signature_failures_total") == 1
    assert await metric(receiver, "forward_latency_seconds_count") == 2
    # The worker's metrics are declared on the same registry, at zero.
    assert await metric(receiver, "token_refreshes_total") == 0


async def test_each_app_has_its_own_registry(
    backend_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any
) -> None:
    first = await aiohttp_client(create_receiver_app(bot_settings(backend_url, redis_url, queue.name)))
    second = await aiohttp_client(create_receiver_app(bot_settings(backend_url, redis_url, queue.name)))
    await post_webhook(first, "pull_request", pull_request_payload("opened"), secret="wrong")
    assert await metric(first, "webhook_signature_failures_total") == 1
    assert await metric(second, "webhook_signature_failures_total") == 0


async def test_no_secret_or_body_in_logs(
    installed: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"canary-{uuid.uuid4().hex}"
    payload = pull_request_payload("opened")
    payload["pull_request"]["title"] = canary
    payload["pull_request"]["body"] = canary
    await post_webhook(installed, "pull_request", payload)
    await post_webhook(installed, "pull_request", payload, secret="wrong")
    bad = pull_request_payload("opened")
    del bad["pull_request"]["user"]
    bad["pull_request"]["title"] = canary
    await post_webhook(installed, "pull_request", bad)
    await post_webhook(installed, "pull_request", None, raw=b'{"broken": "' + canary.encode())

    records = [r for r in caplog.records if r.name.startswith("bot_worker")]
    assert records, "the receiver logs something for these deliveries"
    assert any(getattr(r, "delivery_id", None) for r in records)
    everything = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for secret in (WEBHOOK_SECRET, INTERNAL_SECRET, canary):
        assert secret not in everything


# ---- webhook secret rotation (docs/security.md, "One webhook secret, so every rotation had a 401 gap") ---------------


@pytest.mark.parametrize("variables", [
    {"GITHUB_WEBHOOK_SECRET": "old-secret-" + "a" * 24, "GITHUB_WEBHOOK_SECRETS": "new-secret-" + "b" * 24},
    {"GITHUB_WEBHOOK_SECRETS": f"new-secret-{'b' * 24}, old-secret-{'a' * 24}"},
])
async def test_during_a_rotation_both_secrets_verify_and_no_other(
    backend_url: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, db: asyncpg.Pool,
    variables: dict[str, str],
) -> None:
    """Before: one secret only, so between changing it on GitHub and on the receivers every delivery got 401."""
    settings = BotSettings.model_validate(
        {"BACKEND_URL": backend_url, **INTERNAL_ENV, "REDIS_URL": redis_url, **variables}
    ).model_copy(update={"queue_name": queue.name})
    client = await aiohttp_client(create_receiver_app(settings))
    old, new = "old-secret-" + "a" * 24, "new-secret-" + "b" * 24
    resp = await post_webhook(client, "installation", installation_payload("created"), secret=old)
    assert resp.status == 200, await resp.text()
    resp = await post_webhook(client, "pull_request", pull_request_payload("opened", number=3), secret=new)
    assert resp.status == 200, await resp.text()
    for wrong in (WEBHOOK_SECRET, old + "x", "", new[:-1]):
        resp = await post_webhook(client, "pull_request", pull_request_payload("opened", number=4), secret=wrong)
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    assert len(await fetch(db, "SELECT * FROM github_installations")) == 1
    assert len(await fetch(db, "SELECT * FROM webhook_deliveries WHERE event_name = 'pull_request'")) == 1
    assert await metric(client, "webhook_signature_failures_total") == 4


async def test_receiver_metrics_leave_the_workers_families_out(installed: TestClient[Any, Any]) -> None:
    families = {f.name for f in text_string_to_metric_families(await (await installed.get("/metrics")).text())}
    assert {"webhooks_received", "webhooks_forwarded", "forward_latency_seconds", "forward_queue"} <= families
    assert not families & {"actions_claimed", "actions_executed", "claim_errors", "claim_latency_seconds",
                           "reconcile_runs", "redelivery_runs", "lease_extensions"}
