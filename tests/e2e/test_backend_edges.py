"""The backend's HTTP edges against a real `prgate backend` process and raw sockets (docs/security.md, "Multipart
bodies skipped the backend's slow-body deadline", "Client hang-ups logged as \"unhandled error\" and \"database
unavailable\"").

A multipart body cannot trickle in past the body deadline; every other body meets that deadline; a
client that hangs up mid-request is logged as a hang-up, not as an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import INTERNAL_ENV
from tests.support.processes import Fleet, Proc, eventually, free_port, wait_http_ok


@dataclass
class Backend:
    proc: Proc
    port: int


@pytest.fixture
async def backend(db: asyncpg.Pool, database_url: str) -> AsyncIterator[Backend]:
    fleet = Fleet()
    port = free_port()
    env = {
        "DATABASE_URL": database_url, **INTERNAL_ENV, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port),
        "BACKEND_PUBLIC_URL": f"http://127.0.0.1:{port}", "SWEEP_INTERVAL_SECONDS": "3600",
        "BODY_READ_TIMEOUT_SECONDS": "1",
    }
    proc = fleet.start("backend", "backend", env)
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc)
        yield Backend(proc, port)
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


@dataclass
class Trickled:
    answer: bytes
    closed: bool  # the server closed the connection; False: the client gave up first
    sent: int


async def trickle(port: int, path: str, content_type: str, body: bytes, *, pace: float, give_up: float) -> Trickled:
    """POST `body` one byte every `pace` s, reading meanwhile, for at most `give_up` s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    sent = 0

    async def send() -> None:
        nonlocal sent
        writer.write(head.encode())
        for byte in body:
            await writer.drain()
            writer.write(bytes([byte]))
            sent += 1
            await asyncio.sleep(pace)
        await asyncio.Event().wait()

    answer = bytearray()

    async def read() -> None:
        try:
            while chunk := await reader.read(65536):
                answer.extend(chunk)
        except ConnectionError:
            pass

    sending = asyncio.create_task(send())
    try:
        await asyncio.wait_for(read(), timeout=give_up)
        closed = True
    except TimeoutError:
        closed = False
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return Trickled(bytes(answer), closed, sent)


MULTIPART = (b'--x\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + b"a" * 200 + b"\r\n--x--\r\n")


async def test_a_trickled_multipart_logout_is_refused_unread_and_closed(backend: Backend) -> None:
    """Before: multipart skipped the body deadline and held /auth/logout open for as long as it trickled."""
    outcome = await trickle(backend.port, "/auth/logout", "multipart/form-data; boundary=x", MULTIPART,
                            pace=0.5, give_up=20)
    assert outcome.closed, (outcome.sent, outcome.answer[:200])
    assert outcome.answer.startswith(b"HTTP/1.1 415"), outcome.answer[:200]
    assert b'"error": "unsupported_media_type"' in outcome.answer
    assert b"Connection: close" in outcome.answer
    assert outcome.sent < len(MULTIPART)
    assert backend.proc.alive()


async def test_every_other_trickled_body_is_cut_off_with_408(backend: Backend) -> None:
    body = b"csrf=" + b"a" * 200
    content_types = ["application/x-www-form-urlencoded", "text/plain", "application/json"]
    # At once: a trickle is cut only after ten body deadlines, and each content type is its own connection.
    outcomes = await asyncio.gather(*(
        trickle(backend.port, "/auth/logout", content_type, body, pace=0.5, give_up=30)
        for content_type in content_types))
    for content_type, outcome in zip(content_types, outcomes, strict=True):
        assert outcome.closed, (content_type, outcome.sent, outcome.answer[:200])
        assert outcome.answer.startswith(b"HTTP/1.1 408"), (content_type, outcome.answer[:200])
        assert b'"error": "request_timeout"' in outcome.answer
        assert outcome.sent < len(body)


# ---- client hang-ups (docs/security.md, "Client hang-ups logged as ...") ---------------------------------------------


async def _hang_up_mid_body(port: int, path: str, content_type: str) -> None:
    """Headers and part of the body, then the connection dropped: the client gave up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                  "Content-Length: 1000\r\n\r\ncsrf=abc").encode())
    await writer.drain()
    await asyncio.sleep(0.2)  # the server is reading the body by now
    writer.close()
    await writer.wait_closed()


def _records(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def test_a_client_that_hangs_up_is_logged_at_info_and_counted_not_as_an_error(backend: Backend) -> None:
    """Before: logged at ERROR as "unhandled error" with a traceback (and pages as "database unavailable")."""
    for path, content_type in (("/auth/logout", "application/x-www-form-urlencoded"),
                               ("/internal/v2/github/events/pull_request", "application/json")):
        await _hang_up_mid_body(backend.port, path, content_type)

    async def counted() -> bool:
        return await _hangups(backend) >= 2

    await eventually(counted, timeout=15)
    records = _records(backend.proc.log())
    hangups = [r for r in records if r["msg"] == "client hung up mid-request"]
    assert [(r["level"], r["path"]) for r in hangups] == [
        ("info", "/auth/logout"), ("info", "/internal/v2/github/events/pull_request"),
    ]
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    assert await _hangups(backend) == 2
    assert backend.proc.alive()


async def _hangups(backend: Backend) -> float:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{backend.port}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("backend_client_hangups_total{"))
