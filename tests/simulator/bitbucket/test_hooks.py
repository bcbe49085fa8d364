"""Workspace hooks: registration through the API, and signed deliveries to a real receiver."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from provider_clients.bitbucket import hook_secret
from provider_clients.bitbucket.api import HOOK_EVENTS, BadRequest, NotFound
from tests.simulator.bitbucket.support import ACME_UUID, ALICE, BB, GLOBEX_UUID, MAINTAINER, Receiver

MASTER = b"master-secret-for-tests"
FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "bitbucket" / "webhooks"


async def _register(bb: BB, receiver: Receiver, workspace: str, uuid: str, *,
                    events: tuple[str, ...] = HOOK_EVENTS, active: bool = True) -> str:
    secret = hook_secret.derive(MASTER, uuid)
    hook = await bb.client(workspace).create_hook(workspace, url=receiver.url(workspace), secret=secret,
                                                  events=events, active=active)
    return hook.uuid


async def test_hook_crud_and_the_secret_is_write_only(bb: BB, receiver: Receiver) -> None:
    client = bb.client("acme")
    created = await client.create_hook("acme", url=receiver.url("acme"), secret="s3cret", description="prgate")
    assert created.secret_set
    assert created.active
    assert sorted(created.events) == sorted(HOOK_EVENTS)
    status, raw, _ = await bb.api("GET", f"/2.0/workspaces/acme/hooks/{created.uuid}", bb.tokens["acme"])
    assert status == 200
    assert "secret" not in raw
    assert raw["secret_set"] is True
    assert raw["type"] == "webhook_subscription"
    assert raw["uuid"] == created.uuid
    assert [h.uuid for h in await client.list_hooks("acme")] == [created.uuid]
    updated = await client.update_hook("acme", created.uuid, url=receiver.url("acme2"), secret="other",
                                       events=("pullrequest:created",), active=False)
    assert (updated.url, updated.events, updated.active) == (receiver.url("acme2"), ["pullrequest:created"], False)
    assert bb.state.hook("acme", created.uuid).secret == "other"
    await client.delete_hook("acme", created.uuid)
    assert await client.list_hooks("acme") == []
    with pytest.raises(NotFound):
        await client.delete_hook("acme", created.uuid)


@pytest.mark.parametrize("body", [
    {"url": "not a url", "events": ["repo:push"]},
    {"url": "http://x.test/h", "events": []},
    {"url": "http://x.test/h", "events": ["no:such"]},
    {"url": "http://x.test/h", "events": ["repo:push"], "active": "yes"},
])
async def test_a_bad_hook_body_is_400_and_nothing_is_created(bb: BB, body: dict[str, object]) -> None:
    status, answer, _ = await bb.api("POST", "/2.0/workspaces/acme/hooks", bb.tokens["acme"], json=body)
    assert status == 400
    assert answer["type"] == "error"
    assert bb.state.hooks_of("acme") == []
    with pytest.raises(BadRequest):
        await bb.client("acme").post("/2.0/workspaces/acme/hooks", body)


async def test_deliveries_are_signed_per_workspace_and_verify_only_with_that_workspaces_secret(
    bb: BB, receiver: Receiver
) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    await _register(bb, receiver, "globex", GLOBEX_UUID)
    opened = await bb.sim("POST", "/repositories/acme/widgets/pullrequests",
                          {"author": ALICE, "title": "New", "source_branch": "new"}, 201)
    assert [d["status"] for d in opened["deliveries"]] == [200]
    assert [d.name for d in receiver.received] == ["acme"]  # globex's hook got nothing
    delivery = receiver.received[0]
    headers = delivery.headers
    assert headers["X-Event-Key"] == "pullrequest:created"
    assert headers["X-Attempt-Number"] == "1"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-UUID"]
    assert headers["X-Hook-UUID"]
    acme_secret = hook_secret.derive(MASTER, ACME_UUID)
    globex_secret = hook_secret.derive(MASTER, GLOBEX_UUID)
    assert hook_secret.signature_matches(acme_secret, delivery.body, headers["X-Hub-Signature"])
    assert not hook_secret.signature_matches(globex_secret, delivery.body, headers["X-Hub-Signature"])
    payload = json.loads(delivery.body)
    assert payload["repository"]["workspace"]["uuid"] == ACME_UUID
    assert payload["pullrequest"]["id"] == opened["id"]
    assert len(payload["pullrequest"]["source"]["commit"]["hash"]) == 12  # abbreviated, as Bitbucket's
    assert payload["pullrequest"]["author"]["account_id"] == ALICE


async def test_every_change_sends_its_event_key(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    before = (await bb.client("acme").pull_request("acme", "widgets", 1)).source.commit
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {"message": "more"})
    await bb.sim("PUT", "/repositories/acme/widgets/pullrequests/1/draft", {"draft": True})
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/comments",
                 {"user": MAINTAINER, "raw": "/prgate recheck"})
    await bb.sim("POST", "/repositories/acme/widgets/files", {"path": ".prgate.yml", "content": "x: 1\n"})
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/merge", {"user": MAINTAINER})
    keys = [d.headers["X-Event-Key"] for d in receiver.received]
    assert keys == ["pullrequest:updated", "pullrequest:updated", "pullrequest:comment_created", "repo:push",
                    "pullrequest:fulfilled"]
    pushed = json.loads(receiver.received[0].body)["pullrequest"]["source"]["commit"]["hash"]
    assert before is not None
    assert not before.hash.startswith(pushed)
    assert json.loads(receiver.received[1].body)["pullrequest"]["draft"] is True
    assert json.loads(receiver.received[2].body)["comment"]["content"]["raw"] == "/prgate recheck"
    assert json.loads(receiver.received[3].body)["push"]["changes"][0]["new"]["name"] == "main"


async def test_api_writes_send_webhooks_too(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    client = bb.client("acme")
    await client.create_comment("acme", "widgets", 1, "from the bot")
    await client.decline("acme", "widgets", 1)
    await receiver.wait_for(2)
    assert sorted(d.headers["X-Event-Key"] for d in receiver.received) == [
        "pullrequest:comment_created", "pullrequest:rejected"]


async def test_inactive_or_unsubscribed_hooks_get_nothing(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID, events=("repo:push",))
    await _register(bb, receiver, "acme", ACME_UUID, active=False)
    await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    assert receiver.received == []


async def test_a_5xx_is_retried_twice_with_the_same_body_and_a_new_request_uuid(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    receiver.statuses = [503, 500, 502]
    answer = await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    assert [(d["attempt"], d["status"]) for d in answer["deliveries"]] == [(1, 503), (2, 500), (3, 502)]
    assert [d.headers["X-Attempt-Number"] for d in receiver.received] == ["1", "2", "3"]
    assert len({d.body for d in receiver.received}) == 1
    assert len({d.headers["X-Request-UUID"] for d in receiver.received}) == 3
    recorded = await bb.sim("GET", "/deliveries?workspace=acme")
    assert len(recorded["deliveries"]) == 3
    assert {d["body_sha256"] for d in recorded["deliveries"]} == {hashlib.sha256(receiver.received[0].body).hexdigest()}


async def test_a_retry_that_succeeds_stops_and_a_4xx_is_never_retried(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    receiver.statuses = [502, 202]
    answer = await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    assert [d["status"] for d in answer["deliveries"]] == [502, 202]
    receiver.received.clear()
    receiver.statuses = [401]
    answer = await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    assert [d["status"] for d in answer["deliveries"]] == [401]
    assert len(receiver.received) == 1


async def test_a_timeout_is_retried(make_bb: Callable[..., Awaitable[BB]], receiver: Receiver) -> None:
    bb = await make_bb(delivery_timeout_seconds=0.2)
    await _register(bb, receiver, "acme", ACME_UUID)
    receiver.delays = [1.0]  # the first attempt outlives the simulator's time-out
    answer = await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {})
    assert [(d["attempt"], d["status"], d["error"]) for d in answer["deliveries"]] == [
        (1, None, "Timed out"), (2, 200, None)]


async def test_resend_is_the_same_body_as_a_new_request(bb: BB, receiver: Receiver) -> None:
    await _register(bb, receiver, "acme", ACME_UUID)
    first = (await bb.sim("POST", "/repositories/acme/widgets/pullrequests/1/commits", {}))["deliveries"][0]
    again = await bb.sim("POST", f"/deliveries/{first['request_uuid']}/resend", {}, 201)
    assert again["request_uuid"] != first["request_uuid"]
    assert again["body_sha256"] == first["body_sha256"]
    assert receiver.received[0].body == receiver.received[1].body
    assert await bb.sim("POST", "/deliveries/nope/resend", {}) == {
        "type": "error", "error": {"message": "No delivery nope"}}


async def test_send_webhook_on_its_own_signs_what_it_sends(bb: BB, receiver: Receiver) -> None:
    from prgate.simulator.bitbucket.webhooks import send_webhook

    body = (FIXTURE_DIR / "cloud__pullrequest_created.json").read_bytes()
    status = await send_webhook(bb.session, receiver.url("raw"), "k", "pullrequest:created", body)
    assert status == 200
    got = receiver.received[0]
    assert got.body == body
    assert hook_secret.signature_matches("k", body, got.headers["X-Hub-Signature"])
