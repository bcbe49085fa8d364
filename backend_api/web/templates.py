"""Server-rendered HTML for the verification pages: one layout, one stylesheet, no template engine.

Every value that comes from outside (logins, repository names, repository texts, URLs) goes
through :func:`esc`. Pages are sent with headers that keep them out of frames and caches and
keep the verification link (it carries the token) out of ``Referer``.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg
from aiohttp import web

from backend_api.challenges import messages
from backend_api.challenges.verify import ChallengeInfo, ChallengeStatus, RepoRules
from backend_api.http.errors import client_hung_up, hangup_response, note_hangup
from shared_contracts.actions import Provider

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;
background:#f6f8fa;margin:0}
main{max-width:40rem;margin:3rem auto;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:1.5rem 2rem}
h1{font-size:1.4rem;margin-top:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#59636e}dd{margin:0}
blockquote{border-left:4px solid #d0d7de;margin:1rem 0;padding:.2rem 1rem;color:#1f2328;white-space:pre-wrap}
.button,button{display:inline-block;background:#1f883d;color:#fff;border:0;border-radius:6px;padding:.5rem 1rem;
font-size:1rem;text-decoration:none;cursor:pointer}
button.link{background:none;color:#0969da;padding:0;font-size:inherit}
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.6rem 1rem}
.ok{background:#dafbe1;border:1px solid #4ac26b;border-radius:6px;padding:.6rem 1rem}
.who{color:#59636e;font-size:.9rem;margin-top:2rem;border-top:1px solid #d0d7de;padding-top:.8rem}
.who form{display:inline}
input[type=text]{width:100%;box-sizing:border-box;padding:.4rem;font-size:1rem}
label{display:block;margin:.8rem 0}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def layout(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · prgate</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=layout(title, body), status=status, content_type="text/html", charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def error_page(status: int, title: str, message: str, extra_html: str = "") -> web.Response:
    """``message`` is plain text (escaped here); ``extra_html`` is trusted markup built by the caller."""
    return page(title, f'<p class=error role=alert>{esc(message)}</p>{extra_html}', status)


def notice_page(status: int, title: str, message: str, extra_html: str = "") -> web.Response:
    """A page whose news is good (already verified, nothing to do): the green box, not the red one.
    ``status`` may still be 4xx — a resubmitted form conflicts — but the person reads a success."""
    return page(title, f'<p class=ok role=status>{esc(message)}</p>{extra_html}', status)


def html_errors(handler: Handler) -> Handler:
    """Browser pages never answer JSON or a bare 500: unexpected failures become an HTML page."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_page(exc.status, exc.reason, exc.text or exc.reason)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            if client_hung_up(request, exc):  # the browser left; the database is fine
                note_hangup(request, "page")
                return hangup_response()
            log.exception("verification page: database unavailable", extra={"path": request.path})
            return error_page(503, "Temporarily unavailable", "prgate cannot reach its database. Try again shortly.")
        except Exception:
            log.exception("verification page failed", extra={"path": request.path})
            return error_page(500, "Something went wrong", "prgate could not show this page. Try again shortly.")

    return wrapped


# ---- pieces -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Links:
    """Where the pages point: the provider's web UI (GitHub's unless told) and this backend's own paths."""

    github_web_url: str  # the provider's web origin (BITBUCKET_WEB_URL for Bitbucket links)
    provider: Provider = Provider.GITHUB

    def repo(self, full_name: str) -> str:
        return f"{self.github_web_url.rstrip('/')}/{quote(full_name)}"

    def pull(self, full_name: str, number: int) -> str:
        if self.provider is Provider.BITBUCKET:
            return f"{self.repo(full_name)}/pull-requests/{number}"
        return f"{self.repo(full_name)}/pull/{number}"

    def user(self, login: str) -> str:
        return f"{self.github_web_url.rstrip('/')}/{quote(login)}"

    def profile(self, login: str) -> str | None:
        """The author's page, when the provider has one by login (Bitbucket's are not by nickname)."""
        return None if self.provider is Provider.BITBUCKET else self.user(login)

    @staticmethod
    def login(next_path: str, provider: Provider = Provider.GITHUB) -> str:
        return f"/auth/{provider.value}/login?next={quote(next_path, safe='')}"


PROVIDER_NAMES = {Provider.GITHUB: "GitHub", Provider.BITBUCKET: "Bitbucket"}


def sign_in_button(next_path: str, provider: Provider = Provider.GITHUB) -> str:
    return (f'<p><a class=button href="{esc(Links.login(next_path, provider))}">'
            f"Sign in with {PROVIDER_NAMES[provider]}</a></p>")


def signed_in_bar(login: str, logout_csrf: str, next_path: str) -> str:
    return (
        f"<div class=who>Signed in as <strong>@{esc(login)}</strong> · "
        '<form method=post action="/auth/logout">'
        f'<input type=hidden name=csrf value="{esc(logout_csrf)}">'
        f'<input type=hidden name=next value="{esc(next_path)}">'
        "<button class=link type=submit>Sign out</button></form></div>"
    )


def status_text(challenge: ChallengeInfo, warn_only: bool) -> str:
    deadline = messages.format_deadline(challenge.deadline_at)
    match challenge.status:
        case ChallengeStatus.PENDING:
            return f"Waiting for @{challenge.author_login} to verify (deadline {deadline})"
        case ChallengeStatus.TIMED_OUT:
            if warn_only:
                return f"The deadline ({deadline}) has passed; you can still verify"
            return f"The deadline ({deadline}) has passed and the pull request was closed; you can still verify"
        case ChallengeStatus.VERIFIED:
            return "Verified"
        case ChallengeStatus.EXEMPTED:
            return "Exempted by a maintainer"
        case _:
            return "Cancelled"


def _maybe_link(href: str | None, text: str) -> str:
    return esc(text) if href is None else f'<a href="{esc(href)}">{esc(text)}</a>'


def challenge_summary(challenge: ChallengeInfo, rules: RepoRules, links: Links) -> str:
    repo, number = challenge.repo_full_name, challenge.pr_number
    return (
        "<dl>"
        f'<dt>Repository</dt><dd><a href="{esc(links.repo(repo))}">{esc(repo)}</a></dd>'
        f'<dt>Pull request</dt><dd><a href="{esc(links.pull(repo, number))}">{esc(repo)}#{number}</a></dd>'
        f"<dt>Author</dt><dd>{_maybe_link(links.profile(challenge.author_login), '@' + challenge.author_login)}</dd>"
        f"<dt>Deadline</dt><dd>{esc(messages.format_deadline(challenge.deadline_at))}</dd>"
        f"<dt>Status</dt><dd>{esc(status_text(challenge, rules.settings.warn_only))}</dd>"
        "</dl>"
    )


def challenge_form(action_path: str, csrf: str, rules: RepoRules, answer: str = "", accepted: bool = False) -> str:
    """The form; after a refused submission it comes back as it was sent (the answer, the box ticked)."""
    question = ""
    if rules.question is not None:
        question = (
            f"<label for=answer>{esc(rules.question)}</label>"
            f'<input type=text id=answer name=answer required maxlength=2000 value="{esc(answer)}" '
            "autocomplete=off>"
        )
    return (
        f'<form method=post action="{esc(action_path)}">'
        f'<input type=hidden name=csrf value="{esc(csrf)}">'
        f"<blockquote>{esc(rules.attestation)}</blockquote>"
        f"<label><input type=checkbox name=accept value=yes required{' checked' if accepted else ''}> "
        "I have read and accept the above.</label>"
        f"{question}<p><button type=submit>Verify</button></p></form>"
    )


def resolved_list(challenges: Sequence[ChallengeInfo], links: Links) -> str:
    items = "".join(
        f'<li><a href="{esc(links.pull(c.repo_full_name, c.pr_number))}">{esc(c.repo_full_name)}#{c.pr_number}</a></li>'
        for c in challenges
    )
    return f"<ul>{items}</ul>"
