"""Who may sign internal calls, and which secrets prgate refuses to start with (docs/security.md).

Each component that calls the backend's ``/internal/v2`` API has keys of its own, so a leaked
receiver key (the one Internet-facing process) cannot claim actions or fetch the App's
credentials:

- ``PRGATE_RECEIVER_SECRETS`` — the webhook receiver (``prgate bot``);
- ``PRGATE_WORKER_SECRETS`` — the workers (``prgate worker``) and ``prgate reconcile``;
- ``PRGATE_ADMIN_SECRETS`` — the operator's ``prgate github-app create`` (optional).

Each is a comma-separated list: the first signs, all verify (rotation). The backend holds all
three lists and learns from the matching key who is calling; every internal route names the
callers it accepts (``backend_api.http.routes``).

:func:`check_secret` is the start-up rule every service applies to every secret it holds: at
least :data:`MIN_SECRET_CHARS` characters, not a value this repository ever published, not an
obvious placeholder. A refused secret stops the process with one line naming the variable.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

MIN_SECRET_CHARS = 32

# Variables replaced by the per-component keys: a process that still sees one refuses to start
# rather than silently running with a key nobody scoped.
RETIRED_VARIABLES = ("PRGATE_INTERNAL_SECRETS",)


class Caller(enum.StrEnum):
    RECEIVER = "receiver"
    WORKER = "worker"
    ADMIN = "admin"


KEY_VARIABLES: Mapping[Caller, str] = {
    Caller.RECEIVER: "PRGATE_RECEIVER_SECRETS",
    Caller.WORKER: "PRGATE_WORKER_SECRETS",
    Caller.ADMIN: "PRGATE_ADMIN_SECRETS",
}

# Every value published in this repository as a default or an example, at any commit. They are
# public, so a deployment that uses one has no secret at all.
KNOWN_SECRETS = frozenset({
    "compose-internal-secret-change-me-0123456789abcdef",
    "compose-session-secret-change-me-0123456789abcdef",
    "test-internal-secret-" + "a" * 32,
    "test-rotated-secret-" + "b" * 32,
})
# Lower-cased substrings that mark a placeholder, whatever surrounds them.
_PLACEHOLDER_MARKS = (
    "change-me", "changeme", "change_me", "replace-me", "replaceme", "replace_me", "placeholder",
    "example", "your-secret", "yoursecret", "insecure", "not-a-secret", "notasecret",
)
# Fewer distinct characters than this cannot come from a random generator ("aaaa…", "0101…").
_MIN_DISTINCT_CHARS = 8


class InsecureSecret(ValueError):
    """A secret prgate refuses to run with; the message is the one line to print."""


def secret_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a secret, or ``None`` when it is."""
    if len(value) < MIN_SECRET_CHARS:
        return f"is {len(value)} characters long; at least {MIN_SECRET_CHARS} are required"
    if value in KNOWN_SECRETS:
        return "is a value published in prgate's repository"
    lowered = value.lower()
    for mark in _PLACEHOLDER_MARKS:
        if mark in lowered:
            return f"looks like a placeholder (contains {mark!r})"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return "has too few distinct characters to be random"
    return None


def check_secret(variable: str, value: str) -> None:
    """Raise :class:`InsecureSecret` when ``value`` (read from ``variable``) is unacceptable."""
    problem = secret_problem(value)
    if problem is not None:
        raise InsecureSecret(
            f"{variable} {problem}: generate one with `openssl rand -hex 32` (docs/security.md)"
        )


def check_keys(variable: str, keys: Sequence[str], *, required: bool = True) -> None:
    """Every entry of a key list must pass :func:`check_secret`; an empty list only when optional."""
    if required and not keys:
        raise InsecureSecret(f"{variable} is not set: it must hold at least one secret (docs/security.md)")
    for position, key in enumerate(keys, start=1):
        problem = secret_problem(key)
        if problem is not None:
            raise InsecureSecret(
                f"{variable} entry {position} {problem}: generate one with `openssl rand -hex 32` "
                "(docs/security.md)"
            )


def check_retired(environ: Mapping[str, str]) -> None:
    """Refuse variables the per-component keys replaced."""
    for variable in RETIRED_VARIABLES:
        if environ.get(variable):
            raise InsecureSecret(
                f"{variable} is no longer read: set {', '.join(KEY_VARIABLES.values())} instead, one key "
                "list per component (docs/security.md)"
            )


def check_distinct(lists: Mapping[Caller, Iterable[str]]) -> None:
    """No key may belong to two callers: the key is how the backend tells them apart."""
    owner: dict[str, Caller] = {}
    for caller, keys in lists.items():
        for key in keys:
            other = owner.setdefault(key, caller)
            if other is not caller:
                raise InsecureSecret(
                    f"{KEY_VARIABLES[other]} and {KEY_VARIABLES[caller]} share a key: each component needs "
                    "keys of its own (docs/security.md)"
                )
