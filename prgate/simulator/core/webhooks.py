"""Signed webhook sending, shared by every simulated provider."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp


def signature_256(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(body)>``: GitHub's ``X-Hub-Signature-256``, and the ``X-Hub-Signature``
    value Bitbucket and Jira send."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_signed(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
) -> int:
    """POST one signed delivery and read the answer; returns the receiver's status code.

    Connection errors and time-outs propagate (``aiohttp.ClientError``, ``TimeoutError``).
    """
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
        await response.read()
        return response.status
