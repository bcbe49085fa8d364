"""Strangers cannot fill the receiver's memory with bodies (docs/security.md, "Unauthenticated memory exhaustion in
the receiver"). A real `prgate bot`.

Unsigned 20 MiB bodies are refused from their headers and never kept (what still arrives after the
answer is dropped chunk by chunk for 2 s, so the answer survives); bodies with a signature-looking header
are read under the concurrent-body and bytes-in-flight bounds and hashed as they stream; stalled and
trickled bodies are cut off with 408. Meanwhile a signed delivery is served. The bound asserted is
on memory: the process's peak RSS (VmHWM in /proc/<pid>/status), not on time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import INTERNAL_ENV
from tests.support.processes import Fleet, Proc, free_port, wait_http_ok
from tests.support.webhooks import WEBHOOK_SECRET

MIB = 1024 * 1024
BODY = 20 * MIB
# Two wrong-signature bodies fit the test's 48 MiB in flight; the ten unsigned ones take nothing.
ALLOWED_GROWTH = 100 * MIB


@dataclass
class Bot:
    proc: Proc
    port: int

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.popen.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)


@pytest.fixture
async def bot(redis_url: str) -> AsyncIterator[Bot]:
    fleet = Fleet()
    port = free_port()
    env = {
        **INTERNAL_ENV, "REDIS_URL": redis_url, "BACKEND_URL": f"http://127.0.0.1:{free_port()}",
        "BOT_HOST": "127.0.0.1", "BOT_PORT": str(port), "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ARQ_QUEUE_NAME": f"prgate-test-{uuid.uuid4().hex}", "BODY_READ_TIMEOUT_SECONDS": "1",
        "RECEIVER_MAX_CONCURRENT_BODIES": "4", "RECEIVER_MAX_BODY_BYTES_IN_FLIGHT": str(48 * MIB),
    }
    proc = fleet.start("bot", "bot", env)
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc)
        yield Bot(proc, port)
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


@dataclass
class Outcome:
    answer: bytes
    sent: int
    closed: bool  # the server closed the connection (rather than the client giving up)


def _head(headers: dict[str, str], length: int) -> bytes:
    lines = ["POST /webhooks/github HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
             "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _github_headers(signature: str | None) -> dict[str, str]:
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4())}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return headers


async def _read_all(reader: asyncio.StreamReader, into: bytearray) -> None:
    """Everything the server sends until it closes (a reset after the answer counts as closed)."""
    try:
        while chunk := await reader.read(65536):
            into += chunk
    except ConnectionError:
        pass


async def flood(port: int, headers: dict[str, str], length: int, *, pace: float = 0.0, chunk: int = MIB,
                stop_after: int | None = None) -> Outcome:
    """POST `length` bytes, `chunk` at a time (`pace` s apart), reading the answer meanwhile.
    `stop_after`: stall for good after that many bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0

    async def send() -> None:
        nonlocal sent
        writer.write(_head(headers, length))
        await writer.drain()
        block = b"x" * chunk
        limit = length if stop_after is None else stop_after
        while sent < limit:
            n = min(chunk, limit - sent)
            writer.write(block[:n])
            await writer.drain()
            sent += n
            if pace:
                await asyncio.sleep(pace)
        await asyncio.Event().wait()  # hold the connection open; the server decides when it ends

    sending = asyncio.create_task(send())
    answer = bytearray()
    try:
        await asyncio.wait_for(_read_all(reader, answer), timeout=30)
        closed = True
    except TimeoutError:
        closed = False
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return Outcome(bytes(answer), sent, closed)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


async def test_unsigned_and_slow_bodies_leave_memory_bounded_and_a_signed_delivery_through(bot: Bot) -> None:
    async with aiohttp.ClientSession() as session:
        await _ping(session, bot)  # warm: the first request imports and allocates what every later one reuses
        baseline = bot.status_kib("VmRSS") * 1024

        unsigned = [flood(bot.port, _github_headers(None), BODY) for _ in range(10)]
        wrong = [flood(bot.port, _github_headers("sha256=" + "0" * 64), BODY) for _ in range(2)]
        stalled = flood(bot.port, _github_headers("sha256=" + "1" * 64), 4096, chunk=512, stop_after=1024)
        trickled = flood(bot.port, _github_headers("sha256=" + "2" * 64), 4096, chunk=1, pace=0.5)
        attack = asyncio.gather(*unsigned, *wrong, stalled, trickled)
        await asyncio.sleep(0.5)
        pong = await _ping(session, bot)  # while the attack is on
        outcomes = await attack

    peak = bot.status_kib("VmHWM") * 1024
    assert peak - baseline < ALLOWED_GROWTH, (baseline // MIB, peak // MIB)
    assert bot.proc.alive()
    assert pong == {"status": "pong"}
    statuses = [status_of(o.answer) for o in outcomes]
    assert statuses == [401] * 12 + [408, 408], statuses
    for outcome in outcomes:
        assert outcome.closed
        assert b"Connection: close" in outcome.answer, outcome.answer[:300]
        assert b'"error": ' in outcome.answer


async def _ping(session: aiohttp.ClientSession, bot: Bot) -> object:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    async with session.post(f"http://127.0.0.1:{bot.port}/webhooks/github", data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
