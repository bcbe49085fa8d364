"""Who may use the owner API and the dashboard. Pure: GitHub's answer and the settings come in.

- Owner API (per repository): signed in with GitHub, and GitHub says the user's permission on the
  repository is ``admin`` (asked with the installation's token, never guessed from logins).
- Dashboard (every tenant): signed in, and the user is listed in ``PRGATE_OPERATORS``: an entry
  ``login:id`` matches the GitHub user id only (the login is for people reading the setting); a bare
  ``login`` still matches by login, and the backend warns at start-up, because a login can be
  renamed and then registered by someone else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

ADMIN_PERMISSION = "admin"
# CSRF scope of state-changing owner API calls; the token is sent in the X-CSRF-Token header.
CSRF_SCOPE_OWNER_API = "owner-api"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def is_admin(permission: str) -> bool:
    return permission == ADMIN_PERMISSION


@dataclass(frozen=True, slots=True)
class Operator:
    login: str
    user_id: int | None  # None: a bare login (matched by login, warned about at start-up)


def parse_operator(entry: str) -> Operator:
    """``login:id`` or ``login``; a malformed id is a ValueError (the setting is refused)."""
    login, sep, raw_id = entry.strip().partition(":")
    if not sep:
        return Operator(login=login, user_id=None)
    if not login or not raw_id.strip().isdigit() or int(raw_id) <= 0:
        raise ValueError(f"PRGATE_OPERATORS entry {entry.strip()!r} is not login:id with a positive numeric id")
    return Operator(login=login, user_id=int(raw_id))


def bare_operator_logins(operators: Iterable[str]) -> list[str]:
    return [op.login for op in map(parse_operator, operators) if op.user_id is None and op.login]


def is_operator(operators: Iterable[str], login: str, user_id: int) -> bool:
    """By user id where the entry has one; a bare entry by login (GitHub logins ignore case)."""
    wanted = login.casefold()
    for op in map(parse_operator, operators):
        if op.user_id is not None:
            if op.user_id == user_id:
                return True
        elif op.login and op.login.casefold() == wanted:
            return True
    return False


class PageQuery(BaseModel):
    """``?limit=&before=`` of the owner API's lists: ``before`` is an id, exclusive."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1)


def next_before(ids: list[int], limit: int) -> int | None:
    """The cursor of the next page: the last id of a full page (a short page is the last one)."""
    return ids[-1] if len(ids) == limit and ids else None
