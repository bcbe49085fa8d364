"""Tampered, oversized, malformed and stalled requests against the receiver and the backend's internal API.

Everything must be refused with a JSON 4xx (or, for a body that never arrives, a closed or
silent connection), never a 5xx, and must write nothing: business rows are snapshotted around
every request. Both apps run on real sockets against the real database.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from backend_api.app import create_app
from backend_api.http.errors import MAX_BODY_BYTES as BACKEND_MAX_BODY
from bot_worker.providers.github.webhook import MAX_BODY_BYTES as RECEIVER_MAX_BODY
from bot_worker.webhooks.app import create_receiver_app
from prgate.simulator.github.webhooks import webhook_headers
from shared_contracts import signing
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.support.ingest import INSTALLATION_PATH, PR_PATH
from tests.support.outbox import CLAIM
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.rows import snapshot
from tests.support.webhooks import WEBHOOK_SECRET, TestQueue, bot_settings, fresh_queue

from bot_worker.providers.github.normalize import pull_request_event  # isort: skip

WEBHOOK_PATH = "/webhooks/github"
NESTED = b"[" * 10_000 + b"]" * 10_000
NESTED_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TestQueue]:
    async with fresh_queue(redis_url) as q:
        yield q


@pytest.fixture
async def stack(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_server: Any
) -> AsyncIterator[tuple[TestServer, TestServer, aiohttp.ClientSession]]:
    """(backend, receiver, session): both on real ports, one installation already accepted."""
    backend: TestServer = await aiohttp_server(create_app(backend_settings(database_url)))
    receiver: TestServer = await aiohttp_server(
        create_receiver_app(bot_settings(str(backend.make_url("/")), redis_url, queue.name))
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        status, _ = await post_webhook(session, receiver, "installation", json.dumps(installation_payload()).encode())
        assert status == 200
        yield backend, receiver, session


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def post_webhook(
    session: aiohttp.ClientSession, receiver: TestServer, event: str, body: bytes, *,
    signature: str | None = None, content_type: str = "application/json",
) -> tuple[int, Any]:
    headers = webhook_headers(WEBHOOK_SECRET, event, body, str(uuid.uuid4()))
    headers["Content-Type"] = content_type
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    async with session.post(url(receiver, WEBHOOK_PATH), data=body, headers=headers) as resp:
        return resp.status, await _json(resp)


async def post_internal(
    session: aiohttp.ClientSession, backend: TestServer, path: str, body: bytes, *,
    headers: dict[str, str] | None = None, content_type: str = "application/json", now: float | None = None,
    nonce: str | None = None,
) -> tuple[int, Any]:
    signed = signing.sign(INTERNAL_SECRET, "POST", path, body, now=now, nonce=nonce)
    all_headers = {"Content-Type": content_type, **signed, **(headers or {})}
    async with session.post(url(backend, path), data=body, headers=all_headers) as resp:
        return resp.status, await _json(resp)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text()
    assert resp.content_type == "application/json", (resp.status, resp.content_type, text[:300])
    return json.loads(text)


def assert_clean_4xx(status: int, body: Any, expected: int | None = None) -> None:
    assert 400 <= status < 500, (status, body)
    if expected is not None:
        assert status == expected, (status, body)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("message"), str), body


def pr_body() -> bytes:
    return json.dumps(pull_request_payload("opened", number=11)).encode()


def internal_pr_body() -> bytes:
    return pull_request_event(str(uuid.uuid4()), pull_request_payload("opened", number=12)).model_dump_json().encode()


def flip(text: str, index: int) -> str:
    """`text` with one bit of the character at `index` flipped, kept printable ASCII."""
    c = text[index]
    flipped = chr(ord(c) ^ 0x01)
    if flipped == c or not flipped.isprintable():
        flipped = chr(ord(c) ^ 0x02)
    return text[:index] + flipped + text[index + 1:]


# Byte-position classes of a `sha256=<64 hex>` / `v1=<64 hex>` value: the prefix, the separator, the
# first / a middle / the last hex digit, and a case change (hex digits a-f → A-F).
def positions(prefix_len: int) -> dict[str, int]:
    return {"prefix": 0, "separator": prefix_len - 1, "first-hex": prefix_len, "middle-hex": prefix_len + 31,
            "last-hex": prefix_len + 63}


# ---- receiver ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", sorted(positions(len("sha256="))))
async def test_receiver_flipped_signature_bit_is_401(stack: Any, db: asyncpg.Pool, where: str) -> None:
    _, receiver, session = stack
    body = pr_body()
    good = webhook_headers(WEBHOOK_SECRET, "pull_request", body, "d")["X-Hub-Signature-256"]
    before = await snapshot(db)
    status, answer = await post_webhook(session, receiver, "pull_request", body,
                                        signature=flip(good, positions(len("sha256="))[where]))
    assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == before


async def test_receiver_signature_variants_are_401(stack: Any, db: asyncpg.Pool) -> None:
    _, receiver, session = stack
    body = pr_body()
    good = webhook_headers(WEBHOOK_SECRET, "pull_request", body, "d")["X-Hub-Signature-256"]
    before = await snapshot(db)
    for bad in (good[:-1], good + "0", "sha1=" + good[7:], good[7:], "sha256=", "sha256=" + "é" * 64,
                good.replace("sha256=", "sha256= ")):
        status, answer = await post_webhook(session, receiver, "pull_request", body, signature=bad)
        assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == before


async def test_receiver_oversized_body_is_413(stack: Any, db: asyncpg.Pool) -> None:
    _, receiver, session = stack
    before = await snapshot(db)
    body = b'{"pad":"' + b"x" * (RECEIVER_MAX_BODY - 9) + b'"}'
    assert len(body) == RECEIVER_MAX_BODY + 1
    status, answer = await post_webhook(session, receiver, "pull_request", body)
    assert_clean_4xx(status, answer, 413)
    assert await snapshot(db) == before


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
])
async def test_receiver_wrong_content_type_is_4xx(stack: Any, db: asyncpg.Pool, content_type: str) -> None:
    _, receiver, session = stack
    before = await snapshot(db)
    status, answer = await post_webhook(session, receiver, "pull_request", pr_body(), content_type=content_type)
    assert_clean_4xx(status, answer)
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("truncated", pr_body()[:-1]),
        ("truncated-half", pr_body()[: len(pr_body()) // 2]),
        ("nested-arrays-10000", NESTED),
        ("nested-objects-10000", NESTED_OBJECT),
        ("not-utf8", b'{"action": "\xff"}'),
        ("nan", b'{"action": NaN}'),
    ],
)
async def test_receiver_malformed_json_is_4xx(stack: Any, db: asyncpg.Pool, name: str, body: bytes) -> None:
    _, receiver, session = stack
    before = await snapshot(db)
    status, answer = await post_webhook(session, receiver, "pull_request", body)
    assert_clean_4xx(status, answer)
    assert await snapshot(db) == before


async def test_receiver_duplicated_json_keys_are_refused(stack: Any, db: asyncpg.Pool) -> None:
    """Two `installation` keys: a parser-differential hazard (which one is meant?)."""
    _, receiver, session = stack
    payload = json.dumps(pull_request_payload("opened", number=13))
    body = ('{"installation": {"id": 2002},' + payload[1:]).encode()
    before = await snapshot(db)
    status, answer = await post_webhook(session, receiver, "pull_request", body)
    assert_clean_4xx(status, answer)
    assert await snapshot(db) == before


# ---- backend internal API ------------------------------------------------------------------------


@pytest.mark.parametrize("where", sorted(positions(len("v1="))))
async def test_internal_flipped_signature_bit_is_401(stack: Any, db: asyncpg.Pool, where: str) -> None:
    backend, _, session = stack
    body = internal_pr_body()
    signed = signing.sign(INTERNAL_SECRET, "POST", PR_PATH, body)
    bad = flip(signed[signing.SIGNATURE_HEADER], positions(len("v1="))[where])
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, PR_PATH, body, headers={
        **signed, signing.SIGNATURE_HEADER: bad})
    assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == before


@pytest.mark.parametrize("header", [signing.TIMESTAMP_HEADER, signing.NONCE_HEADER])
async def test_internal_flipped_timestamp_or_nonce_is_401(stack: Any, db: asyncpg.Pool, header: str) -> None:
    backend, _, session = stack
    body = internal_pr_body()
    signed = signing.sign(INTERNAL_SECRET, "POST", PR_PATH, body)
    before = await snapshot(db)
    for index in (0, len(signed[header]) - 1):
        status, answer = await post_internal(session, backend, PR_PATH, body,
                                             headers={**signed, header: flip(signed[header], index)})
        assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == before


@pytest.mark.parametrize("skew", [-301, 301, -86_400 * 365, 10**11])
async def test_internal_stale_or_future_timestamp_is_401(stack: Any, db: asyncpg.Pool, skew: int) -> None:
    backend, _, session = stack
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, PR_PATH, internal_pr_body(), now=time.time() + skew)
    assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == before


async def test_internal_replayed_nonce_is_401(stack: Any, db: asyncpg.Pool) -> None:
    backend, _, session = stack
    nonce = uuid.uuid4().hex
    body = internal_pr_body()
    status, _ = await post_internal(session, backend, PR_PATH, body, nonce=nonce)
    assert status == 200
    after_first = await snapshot(db)
    # The same request again, and a different body under the same nonce.
    for replay in (body, internal_pr_body()):
        status, answer = await post_internal(session, backend, PR_PATH, replay, nonce=nonce)
        assert_clean_4xx(status, answer, 401)
    assert await snapshot(db) == after_first


@pytest.mark.parametrize("path", [PR_PATH, INSTALLATION_PATH, CLAIM])
async def test_internal_oversized_body_is_413(stack: Any, db: asyncpg.Pool, path: str) -> None:
    backend, _, session = stack
    body = b'{"pad":"' + b"x" * (BACKEND_MAX_BODY - 9) + b'"}'
    assert len(body) == BACKEND_MAX_BODY + 1
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, path, body)
    assert_clean_4xx(status, answer, 413)
    assert await snapshot(db) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json-patch+json"])
async def test_internal_wrong_content_type_is_415(stack: Any, db: asyncpg.Pool, content_type: str) -> None:
    backend, _, session = stack
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, PR_PATH, internal_pr_body(), content_type=content_type)
    assert_clean_4xx(status, answer, 415)
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("truncated", internal_pr_body()[:-1]),
        ("nested-arrays-10000", NESTED),
        ("nested-objects-10000", NESTED_OBJECT),
        ("nan", b'{"delivery_id": NaN}'),
    ],
)
@pytest.mark.parametrize("path", [PR_PATH, INSTALLATION_PATH, CLAIM])
async def test_internal_malformed_json_is_4xx(
    stack: Any, db: asyncpg.Pool, path: str, name: str, body: bytes
) -> None:
    backend, _, session = stack
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, path, body)
    assert_clean_4xx(status, answer)
    assert await snapshot(db) == before


async def test_internal_duplicated_json_keys_are_refused(stack: Any, db: asyncpg.Pool) -> None:
    backend, _, session = stack
    body = internal_pr_body()
    dup = b'{"installation_id": 2002,' + body[1:]
    before = await snapshot(db)
    status, answer = await post_internal(session, backend, PR_PATH, dup)
    assert_clean_4xx(status, answer)
    assert await snapshot(db) == before


# ---- slow-loris partial bodies ---------------------------------------------------------------------


async def _partial_request(server: TestServer, path: str, headers: dict[str, str], body: bytes,
                           wait: float) -> bytes:
    """Send the headers and half the body, then stall for up to `wait` s; what the server sent until it closed."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode() + body[: len(body) // 2])
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), timeout=wait)  # to EOF: the server closed
        except TimeoutError:
            return b""  # the client gave up: the server is still waiting for the rest of the body
    finally:
        writer.close()


@pytest.mark.parametrize("target", ["receiver", "backend"])
async def test_partial_body_is_cut_off_with_408_and_writes_nothing(
    db: asyncpg.Pool, database_url: str, redis_url: str, queue: TestQueue, aiohttp_server: Any, target: str
) -> None:
    # Short body deadlines for this test (the default is 10 s).
    backend: TestServer = await aiohttp_server(
        create_app(backend_settings(database_url, BODY_READ_TIMEOUT_SECONDS=0.5))
    )
    # Room for all 20 stalled bodies at once: past the bound they would be shed with 503 before any stall
    # (tests/e2e/test_receiver_memory.py covers that).
    receiver: TestServer = await aiohttp_server(create_receiver_app(bot_settings(
        str(backend.make_url("/")), redis_url, queue.name, body_read_timeout_seconds=0.5, max_concurrent_bodies=32,
    )))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        status, _ = await post_webhook(session, receiver, "installation", json.dumps(installation_payload()).encode())
        assert status == 200
        before = await snapshot(db)
        if target == "receiver":
            server, path, body = receiver, WEBHOOK_PATH, pr_body()
            headers = webhook_headers(WEBHOOK_SECRET, "pull_request", body, str(uuid.uuid4()))
        else:
            server, path, body = backend, PR_PATH, internal_pr_body()
            headers = signing.sign(INTERNAL_SECRET, "POST", path, body)
        headers = {**headers, "Content-Type": "application/json"}
        # Several stalled connections at once, while a normal request is served.
        stalled = [asyncio.create_task(_partial_request(server, path, headers, body, wait=10.0)) for _ in range(20)]
        await asyncio.sleep(0.1)
        async with session.get(url(server, "/healthz"), timeout=aiohttp.ClientTimeout(total=5)) as resp:
            assert resp.status == 200
        answers = await asyncio.gather(*stalled)
        for answer in answers:
            # Answered long before the client would give up, and the connection closed (read to EOF).
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b'"error": "request_timeout"' in answer, answer
            assert b"Connection: close" in answer, answer
        assert await snapshot(db) == before
        # Still serving: the same delivery, complete this time, goes through.
        if target == "receiver":
            status, _ = await post_webhook(session, receiver, "pull_request", body)
        else:
            status, _ = await post_internal(session, backend, path, body)
        assert status == 200
