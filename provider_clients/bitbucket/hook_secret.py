"""Per-workspace webhook secrets, derived from one master secret (SOURCES.md §A, docs/bitbucket.md).

The backend registers each workspace's hook with `derive(master, workspace_uuid)`; the stateless
receiver recomputes it from the workspace id in the hook's URL, so verifying a delivery needs no
database call, and a body signed with workspace A's secret never verifies under workspace B's URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# Bitbucket writes UUIDs with braces ("{2f05…}"); URLs and keys use the bare, lower-case form.
_UUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")


def bare_uuid(value: str) -> str | None:
    """`{2F05…}` or `2f05…` → `2f05…` (lower case); None when it is not a UUID."""
    match = _UUID.match(value.strip())
    return match.group(1).lower() if match else None


def braced_uuid(value: str) -> str:
    """The form Bitbucket's payloads and API use: `{2f05…}`. Raises ValueError on a non-UUID."""
    bare = bare_uuid(value)
    if bare is None:
        raise ValueError(f"not a UUID: {value!r}")
    return "{" + bare + "}"


def derive(master: bytes, workspace_uuid: str) -> str:
    """The secret of one workspace's hook: hex HMAC-SHA256(master, "bitbucket-hook:" + bare uuid).

    Hex so it is printable (Bitbucket's UI shows it) and 64 characters, well inside the API's limit.
    """
    bare = bare_uuid(workspace_uuid)
    if bare is None:
        raise ValueError(f"not a workspace UUID: {workspace_uuid!r}")
    return hmac.new(master, b"bitbucket-hook:" + bare.encode(), hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature: sha256=<hex>` against the body, in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())
