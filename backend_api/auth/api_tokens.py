"""API tokens of the read APIs (docs/api-tokens.md). Pure: no I/O, the store and the clock come in.

A token is ``prgate_`` + 43 characters of URL-safe base64 (32 random bytes): the prefix lets secret
scanners find a leaked one. Only its SHA-256 is stored. The scope decision (:func:`can_read`) is
the one check every read route applies, to one repository or to each item of a list.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from shared_contracts.api_tokens import TokenScope

TOKEN_PREFIX = "prgate_"
_TOKEN_BYTES = 32
TOKEN_RE = re.compile(r"prgate_[A-Za-z0-9_-]{43}")
# last_used_at is written at most this often per token: a read costs no write most of the time.
TOUCH_INTERVAL = timedelta(minutes=1)

Provider = Literal["github", "bitbucket"]


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class BearerProblem(StrEnum):
    """Why an Authorization header opens nothing (the ``outcome`` label of the metric too)."""

    MALFORMED = "malformed"  # not ``Bearer prgate_…``
    UNKNOWN = "unknown"  # well-formed, but no such token
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Bearer:
    token: str | None  # None: no Authorization header at all (the session decides)
    problem: BearerProblem | None = None


def parse_authorization(header: str | None) -> Bearer:
    """``Authorization: Bearer <token>``; the scheme ignores case (RFC 9110), the token does not."""
    if header is None:
        return Bearer(None)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not TOKEN_RE.fullmatch(value):
        return Bearer(None, BearerProblem.MALFORMED)
    return Bearer(value)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token (or an operator's session) may read."""

    scope: TokenScope
    installation_id: int | None = None
    workspace_id: int | None = None
    jira_site: str | None = None


OPERATOR = Grant(TokenScope.OPERATOR)


@dataclass(frozen=True, slots=True)
class RepoTenant:
    """Whose a repository is now: its provider and tenant id (installation id, workspace id)."""

    provider: Provider
    tenant_id: int


def can_read(grant: Grant, tenant: RepoTenant) -> bool:
    """The access check of every read route. Out of scope is answered like unknown (404)."""
    match grant.scope:
        case TokenScope.OPERATOR:
            return True
        case TokenScope.INSTALLATION:
            return tenant.provider == "github" and tenant.tenant_id == grant.installation_id
        case TokenScope.WORKSPACE:
            return tenant.provider == "bitbucket" and tenant.tenant_id == grant.workspace_id
        case TokenScope.JIRA_SITE:
            return False  # a Jira site owns no repository; Jira's read APIs come with its issue
    return False


def should_touch(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at >= TOUCH_INTERVAL


def normalize_jira_site(url: str) -> str:
    """``https://Acme.atlassian.net/`` → ``https://acme.atlassian.net``; ValueError when it is not a
    site's base URL (a path, a query, credentials or a port-less non-https scheme)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise ValueError("a Jira site is its https:// base URL, e.g. https://acme.atlassian.net")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        raise ValueError("a Jira site is its base URL only: no path, query or credentials")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("a Jira site URL has a bad port") from None
    host = parts.hostname.lower()
    default = {"https": 443, "http": 80}[parts.scheme.lower()]
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port not in (None, default) else "")
