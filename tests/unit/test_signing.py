from __future__ import annotations

import pytest

from shared_contracts import signing

BODY = b'{"worker_id": "w"}'
PATH = "/internal/v2/bot-actions/claim"


def test_round_trip() -> None:
    headers = signing.sign("s1", "POST", PATH, BODY, now=1_000_000)
    verified = signing.verify(["s1"], headers, "POST", PATH, BODY, now=1_000_100)
    assert verified.nonce == headers[signing.NONCE_HEADER]
    assert len(verified.nonce) >= 32


def test_each_signature_has_a_fresh_nonce() -> None:
    a = signing.sign("s1", "POST", PATH, BODY)
    b = signing.sign("s1", "POST", PATH, BODY)
    assert a[signing.NONCE_HEADER] != b[signing.NONCE_HEADER]
    assert a[signing.SIGNATURE_HEADER] != b[signing.SIGNATURE_HEADER]


def test_rotation_any_active_secret_verifies() -> None:
    headers = signing.sign("old", "POST", PATH, BODY)
    signing.verify(["new", "old"], headers, "POST", PATH, BODY)
    with pytest.raises(signing.SignatureError, match="bad signature"):
        signing.verify(["new"], headers, "POST", PATH, BODY)


def test_matches_documented_canonical_form() -> None:
    import hashlib
    import hmac

    headers = signing.sign("k", "post", "/p?q=1", b"x", now=1700000000, nonce="0" * 32)
    message = "\n".join(["1700000000", "0" * 32, "POST", "/p?q=1", hashlib.sha256(b"x").hexdigest()])
    expected = hmac.new(b"k", message.encode(), hashlib.sha256).hexdigest()
    assert headers[signing.SIGNATURE_HEADER] == f"v1={expected}"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop(signing.SIGNATURE_HEADER), "missing"),
        (lambda h: h.pop(signing.NONCE_HEADER), "missing"),
        (lambda h: h.__setitem__(signing.TIMESTAMP_HEADER, "abc"), "malformed timestamp"),
        (lambda h: h.__setitem__(signing.NONCE_HEADER, "short"), "malformed nonce"),
        (lambda h: h.__setitem__(signing.SIGNATURE_HEADER, "v2=" + "0" * 64), "malformed signature"),
        (lambda h: h.__setitem__(signing.SIGNATURE_HEADER, "v1=" + "0" * 64), "bad signature"),
    ],
)
def test_rejections(mutate: object, reason: str) -> None:
    headers = signing.sign("s1", "POST", PATH, BODY, now=1_000_000)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(signing.SignatureError, match=reason):
        signing.verify(["s1"], headers, "POST", PATH, BODY, now=1_000_000)


@pytest.mark.parametrize("delta", [301, -301])
def test_skew_limit(delta: int) -> None:
    headers = signing.sign("s1", "POST", PATH, BODY, now=1_000_000)
    with pytest.raises(signing.SignatureError, match="window"):
        signing.verify(["s1"], headers, "POST", PATH, BODY, now=1_000_000 + delta)
    signing.verify(["s1"], headers, "POST", PATH, BODY, now=1_000_000 + (300 if delta > 0 else -300))


@pytest.mark.parametrize(("field", "value"), [("method", "GET"), ("path", "/other"), ("body", b"{}")])
def test_any_part_changed_breaks_the_signature(field: str, value: object) -> None:
    headers = signing.sign("s1", "POST", PATH, BODY)
    args = {"method": "POST", "path": PATH, "body": BODY, field: value}
    with pytest.raises(signing.SignatureError, match="bad signature"):
        signing.verify(["s1"], headers, args["method"], args["path"], args["body"])  # type: ignore[arg-type]


def test_no_secret_configured_refuses() -> None:
    with pytest.raises(signing.SignatureError):
        signing.verify([], signing.sign("s", "POST", PATH, BODY), "POST", PATH, BODY)
