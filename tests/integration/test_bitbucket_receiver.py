"""`POST /webhooks/bitbucket/{workspace_uuid}` on a real receiver app with real Redis.

Real Bitbucket payloads (tests/fixtures/bitbucket/webhooks) signed with the secret the backend
registers for the workspace: `derive(master, workspace_uuid)`. These cases never need the backend's
answer, so the backend is a closed port: what reaches it is parked on Redis, as a GitHub delivery is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from bot_worker.jobs.codec import JobCodec
from bot_worker.jobs.forward import KIND_BITBUCKET_COMMAND, KIND_BITBUCKET_PULL_REQUEST, KIND_BITBUCKET_PUSH, decode
from bot_worker.providers.bitbucket.webhook import MAX_BODY_BYTES
from bot_worker.webhooks.app import create_receiver_app
from prgate.simulator.bitbucket.app import PREFIX, create_bitbucket_app
from prgate.simulator.bitbucket.config import BitbucketConfig
from prgate.simulator.bitbucket.http import BB_STATE
from prgate.simulator.core.app import mount
from shared_contracts.bitbucket import BitbucketCommandEvent, BitbucketPullRequestEvent, BitbucketPushEvent
from tests.support.bitbucket import OTHER, WORKSPACE, load, post, secret_of
from tests.support.webhooks import (
    BITBUCKET_MASTER,
    TestQueue,
    bot_settings,
    closed_port,
    fresh_queue,
    metric,
    stub_backend,
)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
def backend_down() -> Iterator[str]:
    with closed_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def receiver(backend_down: str, redis_url: str, queue: TestQueue, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_receiver_app(bot_settings(backend_down, redis_url, queue.name))
    )
    return client


async def queued_job(queue: TestQueue, job_id: str) -> tuple[str, str]:
    raw = await queue.redis.get("arq:job:" + job_id)
    assert raw is not None, f"no job {job_id}"
    kind, body = JobCodec().deserialize(raw)["a"]
    return str(kind), str(body)


# ---- parked when the backend is away -------------------------------------------------------------


async def test_pull_request_is_parked_when_the_backend_is_unreachable(
    receiver: TestClient[Any, Any], queue: TestQueue
) -> None:
    request_uuid = str(uuid.uuid4())
    payload = load("cloud__pullrequest_updated.json")
    resp = await post(receiver, "pullrequest:updated", payload, request_uuid=request_uuid)
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"status": "queued", "delivery_id": request_uuid}
    job_id = f"forward:pullrequest:{request_uuid}"
    assert await queue.job_ids() == {job_id}
    kind, body = await queued_job(queue, job_id)
    assert kind == KIND_BITBUCKET_PULL_REQUEST
    event = decode(kind, body)
    assert isinstance(event, BitbucketPullRequestEvent)
    assert (event.event_key, event.workspace_uuid, event.pull_request.id) == ("pullrequest:updated", WORKSPACE, 1)
    sent = json.dumps(payload).encode()
    assert event.body_sha256 == hashlib.sha256(sent).hexdigest()

    # Bitbucket retries on a 5xx only; a resend of the same request while it waits is not queued twice.
    again = await post(receiver, "pullrequest:updated", payload, request_uuid=request_uuid)
    assert again.status == 202
    assert await queue.job_ids() == {job_id}
    assert await metric(receiver, "forward_queue_total", outcome="enqueued") == 1
    assert await metric(receiver, "forward_queue_total", outcome="already_queued") == 1
    assert await metric(receiver, "webhooks_forwarded_total", event="pullrequest", outcome="queued") == 2


async def test_command_and_push_are_parked_with_their_own_kinds(
    receiver: TestClient[Any, Any], queue: TestQueue
) -> None:
    comment = load("cloud__pullrequest_updated.json")
    comment["comment"] = {"id": 77, "content": {"raw": "/prgate exempt"}, "user": comment["actor"]}
    resp = await post(receiver, "pullrequest:comment_created", comment, request_uuid="c-1")
    assert resp.status == 202, await resp.text()
    kind, body = await queued_job(queue, "forward:pullrequest:comment_created:c-1")
    command = decode(kind, body)
    assert kind == KIND_BITBUCKET_COMMAND
    assert isinstance(command, BitbucketCommandEvent)
    assert (command.command, command.comment_id) == ("exempt", 77)

    resp = await post(receiver, "repo:push", load("cloud__signed_payload.json"), request_uuid="p-1")
    assert resp.status == 202, await resp.text()
    kind, body = await queued_job(queue, "forward:repo:push:p-1")
    push = decode(kind, body)
    assert kind == KIND_BITBUCKET_PUSH
    assert isinstance(push, BitbucketPushEvent)
    assert push.head_commit == "d7f300a32270053bdfd97a6d64113f58202c33e7"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_backend_5xx_or_429_parks_the_delivery(
    redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any, status: int
) -> None:
    backend = await aiohttp_server(stub_backend(status, {"error": "unavailable", "message": "down"}))
    client = await aiohttp_client(create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url,
                                                                   queue.name)))
    resp = await post(client, "pullrequest:created", load("cloud__pullrequest_created.json"), workspace=OTHER,
                      request_uuid="r-5xx")
    assert resp.status == 202, await resp.text()
    assert await queue.job_ids() == {"forward:pullrequest:r-5xx"}


async def test_a_backend_4xx_is_passed_through_and_not_parked(
    redis_url: str, queue: TestQueue, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    refusal = {"error": "conflict", "message": "the backend refuses this one"}
    backend = await aiohttp_server(stub_backend(409, refusal))
    client = await aiohttp_client(create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url,
                                                                   queue.name)))
    resp = await post(client, "repo:push", load("cloud__signed_payload.json"))
    assert resp.status == 409
    assert await resp.json() == refusal
    assert await queue.job_ids() == set()


# ---- answered here, not forwarded ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_key", "payload", "reason"),
    [
        ("repo:commit_status_updated", load("cloud__pullrequest_updated.json"), "unknown_event"),
        ("pullrequest:approved", load("cloud__pullrequest_updated.json"), "unknown_event"),
        ("repo:push", load("cloud__tag_created.json"), "not_main_branch"),
    ],
)
async def test_not_forwarded_events_are_202_ignored_and_counted(
    receiver: TestClient[Any, Any], queue: TestQueue, event_key: str, payload: dict[str, Any], reason: str
) -> None:
    resp = await post(receiver, event_key, payload)
    assert resp.status == 202
    assert await resp.json() == {"status": "ignored"}
    assert await queue.job_ids() == set()
    assert await metric(receiver, "bitbucket_webhooks_ignored_total", event_key=event_key, reason=reason) == 1
    assert await metric(receiver, "webhooks_received_total", event=event_key) == 1


async def test_a_comment_that_is_no_command_is_ignored(receiver: TestClient[Any, Any], queue: TestQueue) -> None:
    payload = load("cloud__pullrequest_updated.json")
    payload["comment"] = {"id": 78, "content": {"raw": "nice work"}, "user": payload["actor"]}
    resp = await post(receiver, "pullrequest:comment_created", payload)
    assert resp.status == 202
    assert await resp.json() == {"status": "ignored"}
    assert await queue.job_ids() == set()


# ---- refused -------------------------------------------------------------------------------------


async def test_signatures_of_another_secret_are_401(receiver: TestClient[Any, Any], queue: TestQueue) -> None:
    payload = load("cloud__pullrequest_updated.json")
    for secret in (
        secret_of(OTHER),  # another workspace's hook secret, sent to this workspace's URL
        BITBUCKET_MASTER,  # the master itself is no workspace's secret
        secret_of(WORKSPACE, master="another-master-" + "e" * 32),
    ):
        resp = await post(receiver, "pullrequest:updated", payload, secret=secret)
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthorized"
    # The same body signed for workspace OTHER, sent to OTHER's URL, is about WORKSPACE: refused too.
    resp = await post(receiver, "pullrequest:updated", payload, workspace=OTHER)
    assert resp.status == 401
    assert "workspace" in (await resp.json())["message"]
    assert await queue.job_ids() == set()
    assert await metric(receiver, "webhook_signature_failures_total") == 3
    assert await metric(receiver, "bitbucket_workspace_mismatches_total") == 1


@pytest.mark.parametrize(
    ("drop", "replace"),
    [
        pytest.param(("X-Hub-Signature",), {}, id="missing"),
        pytest.param((), {"X-Hub-Signature": "sha256=" + "0" * 64}, id="wrong"),
        pytest.param((), {"X-Hub-Signature": "sha1=abc"}, id="sha1"),
    ],
)
async def test_missing_or_bad_signature_is_401(
    receiver: TestClient[Any, Any], drop: tuple[str, ...], replace: dict[str, str]
) -> None:
    resp = await post(receiver, "pullrequest:created", load("cloud__pullrequest_created.json"),
                      workspace=OTHER, drop=drop, replace=replace)
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"


async def test_empty_master_refuses_every_bitbucket_delivery(
    backend_down: str, redis_url: str, queue: TestQueue, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot_worker")
    settings = bot_settings(backend_down, redis_url, queue.name, bitbucket_webhook_secret=[])
    client = await aiohttp_client(create_receiver_app(settings))
    assert [r.message for r in caplog.records if r.levelno == logging.ERROR] == [
        "BITBUCKET_WEBHOOK_SECRET is empty: every Bitbucket webhook will be refused with 401"
    ]
    resp = await post(client, "pullrequest:updated", load("cloud__pullrequest_updated.json"))
    assert resp.status == 401
    assert await queue.job_ids() == set()


async def test_rotated_masters_both_verify(
    backend_down: str, redis_url: str, queue: TestQueue, aiohttp_client: Any
) -> None:
    new = "new-master-" + "f" * 32
    settings = bot_settings(backend_down, redis_url, queue.name, bitbucket_webhook_secret=[new, BITBUCKET_MASTER])
    client = await aiohttp_client(create_receiver_app(settings))
    for master in (new, BITBUCKET_MASTER):
        resp = await post(client, "pullrequest:updated", load("cloud__pullrequest_updated.json"),
                          secret=secret_of(WORKSPACE, master))
        assert resp.status == 202, await resp.text()
    resp = await post(client, "pullrequest:updated", load("cloud__pullrequest_updated.json"),
                      secret=secret_of(WORKSPACE, "retired-" + "a" * 32))
    assert resp.status == 401


async def test_oversized_body_is_413(receiver: TestClient[Any, Any], queue: TestQueue) -> None:
    raw = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    resp = await post(receiver, "pullrequest:created", None, raw=raw)
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"
    assert await queue.job_ids() == set()


async def test_malformed_json_is_400(receiver: TestClient[Any, Any]) -> None:
    resp = await post(receiver, "pullrequest:created", None, raw=b'{"pullrequest": ')
    assert resp.status == 400
    assert (await resp.json())["error"] == "malformed_json"


@pytest.mark.parametrize("header", ["X-Event-Key", "X-Request-UUID"])
async def test_missing_headers_are_400(receiver: TestClient[Any, Any], header: str) -> None:
    resp = await post(receiver, "pullrequest:created", load("cloud__pullrequest_created.json"), drop=(header,))
    assert resp.status == 400
    assert header in (await resp.json())["message"]


def _no_author_uuid(p: dict[str, Any]) -> None:
    del p["pullrequest"]["author"]["uuid"]


def _no_pullrequest(p: dict[str, Any]) -> None:
    del p["pullrequest"]


def _state_is_a_list(p: dict[str, Any]) -> None:
    p["pullrequest"]["state"] = ["OPEN"]


def _id_is_text(p: dict[str, Any]) -> None:
    p["pullrequest"]["id"] = "one"


def _repository_is_text(p: dict[str, Any]) -> None:
    p["repository"] = "nfalco79/test-repos"


def _workspace_uuid_is_garbage(p: dict[str, Any]) -> None:
    p["repository"]["workspace"]["uuid"] = "{nope}"


@pytest.mark.parametrize(
    "mangle",
    [_no_author_uuid, _no_pullrequest, _state_is_a_list, _id_is_text, _repository_is_text,
     _workspace_uuid_is_garbage],
)
async def test_shape_errors_are_422_never_500(receiver: TestClient[Any, Any], queue: TestQueue, mangle: Any) -> None:
    payload = load("cloud__pullrequest_updated.json")
    mangle(payload)
    resp = await post(receiver, "pullrequest:updated", payload)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"] in {"validation_error", "not_forwardable"}
    assert await queue.job_ids() == set()


async def test_json_that_is_not_an_object_is_422(receiver: TestClient[Any, Any]) -> None:
    resp = await post(receiver, "pullrequest:created", [1, 2])
    assert resp.status == 422


async def test_url_without_a_workspace_uuid_is_404(receiver: TestClient[Any, Any]) -> None:
    resp = await post(receiver, "pullrequest:created", load("cloud__pullrequest_created.json"), workspace="acme",
                      secret=secret_of(WORKSPACE))
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


# ---- deliveries as the simulator sends them -------------------------------------------------------


async def test_the_simulators_signed_delivery_verifies_and_another_workspaces_does_not(
    receiver: TestClient[Any, Any], queue: TestQueue
) -> None:
    """The simulator signs as Bitbucket does, with the secret its hook was registered with."""
    root, bitbucket = web.Application(), create_bitbucket_app(BitbucketConfig(delivery_retries=0))
    mount(root, PREFIX, bitbucket)
    server = TestServer(root)
    await server.start_server()
    try:
        sim = bitbucket[BB_STATE]
        ws = sim.add_workspace("nfalco79", uuid=WORKSPACE)
        sim.add_repository("nfalco79", "test-repos")
        sim.add_user("557058:alice", nickname="alice")
        url = str(receiver.make_url(f"/webhooks/bitbucket/{WORKSPACE}"))
        sim.create_hook("nfalco79", url=url, description="prgate", active=True, secret=secret_of(WORKSPACE),
                        events=["pullrequest:created"])
        # A second hook whose secret is another workspace's: the receiver must refuse what it sends.
        sim.create_hook("nfalco79", url=url, description="forged", active=True, secret=secret_of(OTHER),
                        events=["pullrequest:created"])
        async with ClientSession() as session, session.post(
            str(server.make_url(f"{PREFIX}/_sim/repositories/nfalco79/test-repos/pullrequests")),
            json={"author": "557058:alice", "title": "New", "source_branch": "new"},
        ) as resp:
            answer = await resp.json()
            assert resp.status == 201, answer
        assert sorted(d["status"] for d in answer["deliveries"]) == [202, 401]
        [job_id] = await queue.job_ids()
        kind, body = await queued_job(queue, job_id)
        event = decode(kind, body)
        assert isinstance(event, BitbucketPullRequestEvent)
        assert (event.workspace_uuid, event.repository.full_name) == (ws.uuid.strip("{}"), "nfalco79/test-repos")
        assert event.repository.main_branch == "main"  # the simulator sends `mainbranch`
    finally:
        await server.close()
