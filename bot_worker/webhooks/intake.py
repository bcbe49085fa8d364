"""Reading a webhook body without letting strangers fill the receiver's memory (docs/security.md, "Unauthenticated
memory exhaustion in the receiver").

Everything a request can be refused for without its body is decided first, from the headers alone
(`precheck`, pure); a refusal is answered and the connection closed with the body unread. Only then
is a body read, in chunks, each chunk hashed with every configured webhook secret as it arrives, under
two bounds shared by the whole process (`BodyBudget`): how many bodies are read at once and how many
bytes they hold together. A body without Content-Length (chunked) is capped while it streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import ClientPayloadError, web
from multidict import CIMultiDictProxy

from bot_worker.providers.base import WebhookSource
from bot_worker.providers.github.webhook import GITHUB_WEBHOOKS
from shared_contracts import http_body

_SIGNATURE: Final = re.compile(r"^sha256=[0-9a-f]{64}$")
# Seconds a shed delivery is told to wait. GitHub itself never retries; our redelivery job does.
RETRY_AFTER_SECONDS: Final = 30
# The staged close after a refusal (answer_and_close): for how long what still arrives is dropped,
# unkept, and at most how much (what a sender within GitHub's cap can have left to send).
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 26 * 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    """A request refused before (or while) its body is read: status, ErrorBody code, message."""

    status: int
    error: str
    message: str
    # Set for refusals that are a signature failure (counted as such).
    signature: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def precheck(
    headers: CIMultiDictProxy[str], content_type: str, content_length: int | None, *,
    have_secret: bool, max_body_bytes: int, source: WebhookSource = GITHUB_WEBHOOKS,
) -> Refusal | None:
    """Why this request is refused from its headers alone, or None when its body is worth reading."""
    signature_header, event_header, delivery_header = (
        source.signature_header, source.event_header, source.delivery_header
    )
    if not have_secret:
        return Refusal(401, "unauthorized", "webhook secret is not configured on this receiver", signature=True)
    signature = headers.get(signature_header, "")
    if not signature:
        return Refusal(401, "unauthorized", f"missing {signature_header} header", signature=True)
    if not _SIGNATURE.match(signature.strip().lower()):
        return Refusal(401, "unauthorized", f"{signature_header} is not sha256=<64 hex digits>", signature=True)
    if not source.event_name.match(headers.get(event_header, "")):
        return Refusal(400, "bad_request", f"missing or invalid {event_header} header")
    if not source.delivery_id.match(headers.get(delivery_header, "")):
        return Refusal(400, "bad_request", f"missing or invalid {delivery_header} header")
    if content_type not in source.content_types:
        return Refusal(415, "unsupported_media_type", f"Content-Type must be {' or '.join(source.content_types)}")
    if content_length is not None and content_length > max_body_bytes:
        return too_large(max_body_bytes)
    return None


def too_large(max_body_bytes: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"request body exceeds {max_body_bytes} bytes")


def shed(what: str) -> Refusal:
    """Load shedding of a well-formed request: the receiver's bound, not the sender's fault (docs/security.md)."""
    return Refusal(503, "overloaded", f"too many webhook bodies are being read ({what}); redeliver later",
                   headers=(("Retry-After", str(RETRY_AFTER_SECONDS)),))


def _mismatch(signature_header: str) -> Refusal:
    return Refusal(401, "unauthorized", f"{signature_header} does not match the body", signature=True)


STALLED: Final = Refusal(408, "request_timeout", "the request body did not arrive in time")


class BodyBudget:
    """How many webhook bodies are read at once, and how many bytes they may hold together.

    Not an asyncio.Semaphore: nobody waits for a slot. A delivery over the bound is shed at once,
    since a waiting request still holds its connection, which is what a flood wants.
    """

    def __init__(self, max_bodies: int, max_bytes: int) -> None:
        self.max_bodies = max_bodies
        self.max_bytes = max_bytes
        self.bodies = 0
        self.bytes = 0

    def enter(self, reserve: int) -> Refusal | None:
        if self.bodies >= self.max_bodies:
            return shed("concurrent bodies")
        if self.bytes + reserve > self.max_bytes:
            return shed("bytes in flight")
        self.bodies += 1
        self.bytes += reserve
        return None

    def grow(self, more: int) -> bool:
        """Reserve `more` bytes for a body already entered; False (nothing reserved) past the budget."""
        if self.bytes + more > self.max_bytes:
            return False
        self.bytes += more
        return True

    def leave(self, reserved: int) -> None:
        self.bodies -= 1
        self.bytes -= reserved


@dataclass(frozen=True)
class SignedBody:
    body: bytes


def _matches(digests: Sequence[hmac.HMAC], header: str) -> bool:
    """Constant time per secret, and every secret is tried: no early exit tells which one matched."""
    received = header.strip().lower().encode("ascii")
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(("sha256=" + digest.hexdigest()).encode("ascii"), received)
    return matched


async def read_signed(
    request: web.Request, secrets: Sequence[bytes], budget: BodyBudget, *,
    max_body_bytes: int, stall_seconds: float, signature_header: str = GITHUB_WEBHOOKS.signature_header,
) -> SignedBody | Refusal:
    """The body, once its signature header matched one of `secrets`; else why it was refused.

    Call after `precheck`. Stalls are judged as in the backend: no byte for `stall_seconds`, or the
    body taking over ten times that in all, measured in waits rather than by the clock alone.
    """
    if request.content.is_eof():
        # The whole body is already in aiohttp's buffer (the common case: a small delivery that came
        # with its headers), so reading it costs no more memory and no wait: not counted in the bound.
        body = await request.content.read()
        if len(body) > max_body_bytes:
            return too_large(max_body_bytes)
        digests = [hmac.new(secret, body, hashlib.sha256) for secret in secrets]
        if not _matches(digests, request.headers[signature_header]):
            return _mismatch(signature_header)
        return SignedBody(body)
    reserved = request.content_length or 0
    refusal = budget.enter(reserved)
    if refusal is not None:
        return refusal
    digests = [hmac.new(secret, digestmod=hashlib.sha256) for secret in secrets]
    chunks: list[bytes] = []
    size = 0

    async def stream() -> Refusal | None:
        nonlocal size, reserved
        while True:
            try:
                chunk = await request.content.readany()
            except (ClientPayloadError, ConnectionError):
                return Refusal(400, "bad_request", "the request body ended before it was complete")
            if not chunk:
                return None
            size += len(chunk)
            if size > max_body_bytes:
                return too_large(max_body_bytes)
            if size > reserved:  # chunked, or more than Content-Length said
                if not budget.grow(size - reserved):
                    return shed("bytes in flight")
                reserved = size
            for digest in digests:
                digest.update(chunk)
            chunks.append(chunk)

    reading = asyncio.ensure_future(stream())
    try:
        received, waited = -1, 0.0
        while True:
            done, _ = await asyncio.wait({reading}, timeout=stall_seconds)
            if done:
                break
            waited += stall_seconds
            if request.content.total_bytes == received or waited >= 10 * stall_seconds:
                reading.cancel()
                return STALLED
            received = request.content.total_bytes
        refusal = reading.result()
        if refusal is not None:
            return refusal
        if not _matches(digests, request.headers[signature_header]):
            return _mismatch(signature_header)
        return SignedBody(b"".join(chunks))
    finally:
        reading.cancel()  # a no-op once done; else the client left (or stalled) mid-body
        chunks.clear()
        budget.leave(reserved)


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Answer and close with the receiver's linger bounds (`shared_contracts.http_body.answer_and_close`):
    a sender within GitHub's cap may have that much left to send."""
    return await http_body.answer_and_close(request, response, linger_seconds=LINGER_SECONDS,
                                            linger_bytes=LINGER_BYTES)
