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
