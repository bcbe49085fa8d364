"""Hypothesis strategies for GitHub webhook payloads, from the vendored official schemas.

The schemas (tests/fixtures/octokit-webhooks-schemas, written by scripts/extract_webhook_schemas.py)
already have their `$ref`s inlined. Here they get two cheap adjustments before hypothesis-jsonschema
sees them:

* `format: uri` becomes a custom format with a fast strategy (hypothesis-jsonschema's own URI
  strategy roughly doubles the time per pull_request payload, and no prgate code parses URLs);
* integer `format`s (`int64`) are kept as bounds-free integers on purpose: GitHub documents them as
  int64, and a value outside that range is exactly the kind of input the fuzzing should throw.

`payloads(name)` optionally pins the ids a payload refers to onto the installation / repository the
test installed first, so that a share of the examples reach the backend's deeper paths (existing
installation, gated repository) instead of stopping at "unknown installation".
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "octokit-webhooks-schemas"

# Webhook schema name -> (X-GitHub-Event, action).
WEBHOOKS: dict[str, tuple[str, str]] = {
    "pull-request-opened": ("pull_request", "opened"),
    "pull-request-reopened": ("pull_request", "reopened"),
    "pull-request-closed": ("pull_request", "closed"),
    "pull-request-synchronize": ("pull_request", "synchronize"),
    "pull-request-ready-for-review": ("pull_request", "ready_for_review"),
    "installation-created": ("installation", "created"),
    "installation-deleted": ("installation", "deleted"),
    "installation-suspend": ("installation", "suspend"),
    "installation-unsuspend": ("installation", "unsuspend"),
    "installation-repositories-added": ("installation_repositories", "added"),
    "installation-repositories-removed": ("installation_repositories", "removed"),
}

# The installation the fuzz tests install before fuzzing (see tests.support.payloads defaults).
KNOWN_INSTALLATION = 1001
KNOWN_REPO = (5001, "octo-org/widgets")

_URI_FORMAT = "prgate-uri"
_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
URI = st.one_of(
    st.builds(lambda a, b: f"https://github.com/{a}/{b}", _SEGMENT, _SEGMENT),
    st.builds(lambda a: f"https://api.github.com/repos/{a}", _SEGMENT),
    st.sampled_from(["https://github.com", "http://example.test/x?y=1#z", "https://[::1]:8443/%7E"]),
)


def examples(default: int) -> int:
    """`default`, or PRGATE_FUZZ_EXAMPLES when set (long runs raise it; it never lowers the default)."""
    raw = os.environ.get("PRGATE_FUZZ_EXAMPLES", "")
    return max(default, int(raw)) if raw.isdigit() else default


def _adjust(node: Any) -> Any:
    if isinstance(node, list):
        return [_adjust(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _adjust(sub) for name, sub in value.items()}
        elif key == "format" and value in ("uri", "uri-template"):
            out[key] = _URI_FORMAT
        elif key == "format" and value in ("int64", "int32"):
            continue  # not a JSON Schema format; see the module docstring
        else:
            out[key] = _adjust(value)
    return out


@cache
def schema(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    adjusted: dict[str, Any] = _adjust(raw)
    return adjusted


@cache
def _raw_payloads(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return from_schema(schema(name), custom_formats={_URI_FORMAT: URI})


def _pin(payload: dict[str, Any]) -> dict[str, Any]:
    """Point the payload at the installed installation and repository (a copy; the example is kept).

    GitHub's schema allows things prgate's contract refuses on purpose or by design (an installation
    without `installation`, an Enterprise account without a `login`, any string as `full_name`);
    pinned examples make those plausible so they get past the 422 and into the backend.
    """
    out: dict[str, Any] = json.loads(json.dumps(payload))
    installation = out.get("installation")
    if not isinstance(installation, dict):
        installation = out["installation"] = {"id": KNOWN_INSTALLATION}
    installation["id"] = KNOWN_INSTALLATION
    if "account" in installation or out.get("action") in {"created", "deleted", "suspend", "unsuspend", "added",
                                                          "removed"}:
        account = installation.get("account") if isinstance(installation.get("account"), dict) else {}
        installation["account"] = {**account, "login": "octo-org", "id": 777, "type": "Organization"}
    repo_id, full_name = KNOWN_REPO
    if isinstance(out.get("repository"), dict):
        out["repository"].update({"id": repo_id, "full_name": full_name})
    for key in ("repositories", "repositories_added", "repositories_removed"):
        for i, repo in enumerate(out.get(key) or []):
            if isinstance(repo, dict):
                repo["full_name"] = full_name if i == 0 else f"octo-org/fuzz-{repo.get('id', i)}"
    pr = out.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("user"), dict):
        pr["user"].update({"login": "newcomer", "type": "User"})
    if isinstance(out.get("sender"), dict):
        out["sender"].update({"login": "newcomer", "type": "User"})
    if isinstance(pr, dict):
        pr.update({"state": "closed" if out.get("action") == "closed" else "open", "number": 7,
                   "head": {**(pr.get("head") or {}), "sha": "0123456789abcdef0123456789abcdef01234567"}})
    return out


def payloads(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Schema-valid payloads for one webhook; about three in four pinned onto the known installation."""
    pinned = st.integers(0, 3).map(bool)  # shrinks towards 0: the raw, unpinned payload
    # The flag is drawn first: a large payload can use up the choice budget and force later draws to 0.
    return st.tuples(pinned, _raw_payloads(name)).map(lambda pair: _pin(pair[1]) if pair[0] else pair[1])
