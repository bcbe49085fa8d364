"""Internal request signing (docs/contract.md "Internal signing").

    X-Prgate-Timestamp: unix seconds
    X-Prgate-Nonce:     >= 128 random bits, hex
    X-Prgate-Signature: v1=<hex HMAC-SHA256(secret, ts \\n nonce \\n METHOD \\n path?query \\n hex(sha256(body)))>

Several secrets may be active at once: the first signs, all verify, so keys
rotate without downtime. Replay protection (a nonce seen twice within the
window) needs shared storage and is therefore the verifier's caller's job:
`verify` returns the nonce for it to record.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

TIMESTAMP_HEADER = "X-Prgate-Timestamp"
NONCE_HEADER = "X-Prgate-Nonce"
SIGNATURE_HEADER = "X-Prgate-Signature"
K = TypeVar("K")
MAX_SKEW_SECONDS = 300
_NONCE_RE = re.compile(r"^[0-9a-f]{32,128}$")
_SIG_RE = re.compile(r"^v1=([0-9a-f]{64})$")


class SignatureError(Exception):
    """The request is not provably from a holder of an internal secret."""


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    nonce: str
    timestamp: int


def _canonical(timestamp: str, nonce: str, method: str, path_qs: str, body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join((timestamp, nonce, method.upper(), path_qs, body_hash)).encode()


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    secret: str,
    method: str,
    path_qs: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to attach to one internal request. Call again for every retry."""
    ts = str(int(time.time() if now is None else now))
    nonce = nonce or _secrets.token_hex(16)
    signature = _mac(secret, _canonical(ts, nonce, method, path_qs, body))
    return {TIMESTAMP_HEADER: ts, NONCE_HEADER: nonce, SIGNATURE_HEADER: f"v1={signature}"}


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    method: str,
    path_qs: str,
    body: bytes,
    *,
    now: float | None = None,
    max_skew: int = MAX_SKEW_SECONDS,
) -> VerifiedRequest:
    """Check signature and timestamp; raise `SignatureError` with a reason otherwise."""
    verified, _ = verify_keyring({None: secrets}, headers, method, path_qs, body, now=now, max_skew=max_skew)
    return verified


def verify_keyring(
    keyring: Mapping[K, Sequence[str]],
    headers: Mapping[str, str],
    method: str,
    path_qs: str,
    body: bytes,
    *,
    now: float | None = None,
    max_skew: int = MAX_SKEW_SECONDS,
) -> tuple[VerifiedRequest, K]:
    """Like `verify`, over several callers' key lists: also answers whose key signed."""
    if not any(keyring.values()):
        raise SignatureError("no internal secret configured")
    ts_raw = headers.get(TIMESTAMP_HEADER)
    nonce = headers.get(NONCE_HEADER)
    sig_raw = headers.get(SIGNATURE_HEADER)
    if not ts_raw or not nonce or not sig_raw:
        raise SignatureError("missing signature headers")
    if not ts_raw.isdigit() or len(ts_raw) > 12:
        raise SignatureError("malformed timestamp")
    if not _NONCE_RE.match(nonce):
        raise SignatureError("malformed nonce")
    match = _SIG_RE.match(sig_raw)
    if match is None:
        raise SignatureError("malformed signature")
    ts = int(ts_raw)
    current = time.time() if now is None else now
    if abs(current - ts) > max_skew:
        raise SignatureError("timestamp outside the allowed window")
    message = _canonical(ts_raw, nonce, method, path_qs, body)
    presented = match.group(1)
    # Compare against every active secret of every caller without short-circuiting, so timing
    # does not reveal which secret (if any) matched.
    found: list[K] = []
    for caller, secrets in keyring.items():
        ok = False
        for secret in secrets:
            ok |= hmac.compare_digest(_mac(secret, message), presented)
        if ok:
            found.append(caller)
    if not found:
        raise SignatureError("bad signature")
    return VerifiedRequest(nonce=nonce, timestamp=ts), found[0]
