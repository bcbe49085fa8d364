"""Who may use the owner API and the dashboard. Pure: GitHub's answer and the settings come in.

- Owner API (per repository): signed in with GitHub, and GitHub says the user's permission on the
  repository is ``admin`` (asked with the installation's token, never guessed from logins).
- Dashboard (every tenant): signed in, and the login is listed in ``PRGATE_OPERATORS``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

ADMIN_PERMISSION = "admin"
# CSRF scope of state-changing owner API calls; the token is sent in the X-CSRF-Token header.
CSRF_SCOPE_OWNER_API = "owner-api"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def is_admin(permission: str) -> bool:
    return permission == ADMIN_PERMISSION


def is_operator(operators: Iterable[str], login: str) -> bool:
    """GitHub logins are case-insensitive."""
    wanted = login.casefold()
    return any(op.strip().casefold() == wanted for op in operators if op.strip())


class PageQuery(BaseModel):
    """``?limit=&before=`` of the owner API's lists: ``before`` is an id, exclusive."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1)


def next_before(ids: list[int], limit: int) -> int | None:
    """The cursor of the next page: the last id of a full page (a short page is the last one)."""
    return ids[-1] if len(ids) == limit and ids else None
