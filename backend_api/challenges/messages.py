"""Every message prgate posts, in one place. Tests check them through these functions."""

from __future__ import annotations

from datetime import datetime

# One prgate comment per pull request, found again by this hidden marker and
# edited in place, so a PR never collects a pile of bot comments.
PR_COMMENT_MARKER = "<!-- prgate:pr-comment -->"

DEFAULT_CHALLENGE_TEXT = (
    "I confirm that I wrote this contribution myself (or have the right to submit it) "
    "and that it may be distributed under this repository's license."
)


def format_deadline(deadline_at: datetime) -> str:
    return deadline_at.strftime("%Y-%m-%d %H:%M UTC")


def gate_comment(author_login: str, verify_url: str, deadline_at: datetime, warn_only: bool) -> str:
    consequence = (
        "This repository runs prgate in warn-only mode, so the pull request stays open either way."
        if warn_only
        else f"If it is not completed by **{format_deadline(deadline_at)}**, this pull request will be closed "
        "automatically; you can still verify afterwards and it can be reopened."
    )
    return (
        f"{PR_COMMENT_MARKER}\n"
        f"Thanks for the pull request, @{author_login}! This repository asks first-time contributors "
        f"to verify before their pull requests are reviewed.\n\n"
        f"**Please verify here:** {verify_url}\n\n"
        f"{consequence}\n"
    )


def exempt_comment(author_login: str) -> str:
    return (
        f"{PR_COMMENT_MARKER}\n"
        f"@{author_login} is exempt from contributor verification in this repository. "
        f"Thanks for the pull request!\n"
    )


def timed_out_comment(author_login: str, verify_url: str, warn_only: bool, *, can_reopen: bool = True) -> str:
    if warn_only:
        return (
            f"{PR_COMMENT_MARKER}\n"
            f"@{author_login}, the verification deadline has passed. This repository runs prgate in warn-only "
            f"mode, so the pull request stays open; you can still verify here: {verify_url}\n"
        )
    return (
        f"{PR_COMMENT_MARKER}\n"
        f"@{author_login}, this pull request was closed because contributor verification was not completed "
        f"before the deadline. You can still verify here: {verify_url} — "
        + ("after that a maintainer (or prgate, if the repository allows it) can reopen it.\n" if can_reopen
           # Bitbucket cannot reopen a declined pull request (docs/bitbucket.md).
           else "after that, open it again and it will pass.\n")
    )


def verified_comment(author_login: str) -> str:
    return f"{PR_COMMENT_MARKER}\n@{author_login} has verified. Thanks, and welcome!\n"


def verified_after_decline_comment(author_login: str) -> str:
    """Bitbucket cannot reopen a declined pull request: the nearest right thing (docs/bitbucket.md)."""
    return (
        f"{PR_COMMENT_MARKER}\n@{author_login} has verified. Thanks, and welcome! Bitbucket cannot reopen a "
        f"declined pull request: open it again from the same branch and it will pass.\n"
    )


def exempted_comment(author_login: str, by_login: str) -> str:
    return (
        f"{PR_COMMENT_MARKER}\n"
        f"@{by_login} exempted this pull request from contributor verification. Thanks, @{author_login}!\n"
    )


def reopened_after_timeout_comment(author_login: str, by_login: str) -> str:
    return (
        f"{PR_COMMENT_MARKER}\n"
        f"@{by_login} reopened this pull request after the verification deadline; prgate will not close it "
        f"again. Thanks, @{author_login}!\n"
    )


def reply_marker(comment_id: int) -> str:
    """Each command gets at most one reply, found again by the id of the comment it answers."""
    return f"<!-- prgate:reply:{comment_id} -->"


def command_refused_reply(comment_id: int, sender_login: str, command: str) -> str:
    return (
        f"{reply_marker(comment_id)}\n"
        f"@{sender_login}, `/prgate {command}` needs write access to this repository.\n"
    )


def unknown_command_reply(comment_id: int, sender_login: str, command: str) -> str:
    return (
        f"{reply_marker(comment_id)}\n"
        f"@{sender_login}, prgate does not know `/prgate {command}`. "
        f"Try `/prgate recheck` (anyone) or `/prgate exempt` (maintainers).\n"
    )


# Commit status descriptions (GitHub shows at most 140 characters).
STATUS_PENDING = "Waiting for the author to verify"
STATUS_EXEMPT = "Author is exempt from verification"
STATUS_VERIFIED = "Author verified"
STATUS_EXEMPTED = "Exempted by a maintainer"
STATUS_TIMED_OUT = "Verification deadline passed"
# challenges.resolution of a timeout: what prgate did, fixed when it did it (warn-only may change later).
RESOLUTION_TIMED_OUT_CLOSED = "deadline passed: pull request closed"
RESOLUTION_TIMED_OUT_WARNED = "deadline passed: warn-only, left open"
STATUS_REOPENED = "Reopened by a maintainer after the deadline"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 repository``, ``2 repositories``: the nouns prgate counts in pages, reasons and reports."""
    if count == 1:
        return f"{count} {noun}"
    if nouns is None:
        nouns = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count} {nouns}"
