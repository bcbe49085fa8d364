"""The verification page: ``GET /verify/{token}`` shows the challenge, ``POST`` completes it.

Thin handlers: the link token is hashed and looked up (``store.verification``), the session read
from its cookie (``auth.session``), the decision is ``challenges.verify``'s, and the writes happen
in ``gate.verification.verify``'s single transaction. Every answer is an HTML page.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from backend_api.auth.session import CSRF_SCOPE_LOGOUT, Session, csrf_scope_for_challenge
from backend_api.challenges.tokens import hash_token
from backend_api.challenges.verify import (
    ChallengeStatus,
    Refusal,
    SignedInUser,
    VerifyForm,
    page_access,
    too_many_wrong_answers,
)
from backend_api.gate import verification
from backend_api.keys import DB_POOL, SESSIONS, SETTINGS
from backend_api.settings import BackendSettings
from backend_api.store import verification as verification_store
from backend_api.store import wrong_answers
from backend_api.store.verification import ChallengePage
from backend_api.web import templates as t
from backend_api.web.auth import FLOWS, not_configured
from backend_api.web.revocation import current_session
from shared_contracts.actions import Provider

log = logging.getLogger(__name__)

# Link tokens are ``secrets.token_urlsafe(32)`` (43 characters); anything else cannot exist.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")

_EXPIRED_WHY = {
    ChallengeStatus.CANCELLED: "the pull request was closed, or prgate no longer runs on this repository",
    ChallengeStatus.EXEMPTED: "a maintainer exempted this pull request, so there is nothing to verify",
}
_TENANT_WORD = {Provider.GITHUB: "installation", Provider.BITBUCKET: "workspace"}
_FORM_ERRORS = {
    Refusal.NOT_ACCEPTED: "Please tick the box to accept the statement.",
    Refusal.ANSWER_REQUIRED: "Please answer the question.",
    Refusal.WRONG_ANSWER: "That answer is not right. Please check and try again.",
}


def _field(form: MultiDictProxy[Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _user(session: Session | None) -> SignedInUser | None:
    return None if session is None else SignedInUser(id=session.user_id, login=session.login,
                                                      provider=session.provider)


def _links(settings: BackendSettings, provider: Provider) -> t.Links:
    if provider is Provider.BITBUCKET:
        return t.Links(settings.bitbucket_web_url, Provider.BITBUCKET)
    return t.Links(settings.github_web_url)


def _sign_in(request: web.Request, path: str, provider: Provider) -> str:
    """The sign-in the challenge's provider offers, or why there is none (logged and counted)."""
    flow = FLOWS[provider]
    if not flow.configured(request.app[SETTINGS]):
        not_configured(request, flow, "verify_page")
        return (f"<p class=error role=alert>{t.esc(flow.name)} sign-in is not configured on this prgate, so "
                "nobody can verify here yet. Please tell the repository's maintainers.</p>")
    return t.sign_in_button(path, provider)


async def _find(request: web.Request, token: str) -> ChallengePage | None:
    if not _TOKEN.fullmatch(token):
        return None
    async with request.app[DB_POOL].acquire() as conn:
        return await verification_store.find_by_token_hash(conn, hash_token(token))


def _not_found() -> web.Response:
    return t.error_page(
        404, "Link not found",
        "This verification link is not valid. Check that you copied the whole link from the pull request comment.",
    )


def _respond(
    request: web.Request,
    token: str,
    found: ChallengePage,
    session: Session | None,
    refusal: Refusal | None,
    *,
    submitted: bool,
    answer: str = "",
    accepted: bool = False,
) -> web.Response:
    """The page for this challenge as seen by ``session``, refused for ``refusal`` (or the form)."""
    codec = request.app[SESSIONS]
    challenge, rules = found.challenge, found.rules
    links = _links(request.app[SETTINGS], challenge.provider)
    name = t.PROVIDER_NAMES[challenge.provider]
    path = f"/verify/{token}"
    author = challenge.author_login
    summary = t.challenge_summary(challenge, rules, links)
    who = "" if session is None else t.signed_in_bar(
        session.login, codec.csrf_token(session, CSRF_SCOPE_LOGOUT), path
    )

    if refusal is Refusal.ALREADY_VERIFIED:
        when = f" on {challenge.resolved_at:%Y-%m-%d %H:%M} UTC" if challenge.resolved_at else ""
        return t.notice_page(
            409, "Already verified",
            f"@{author} has already verified{when}. This link cannot be used again; there is nothing more to do.",
            summary + who,
        )
    if refusal is Refusal.EXPIRED:
        why = _EXPIRED_WHY.get(challenge.status, "this challenge is closed")
        return t.error_page(409, "Link expired", f"This verification link can no longer be used: {why}.", summary + who)
    if refusal is Refusal.SIGNED_OUT:
        intro = (
            f"<p>@{t.esc(author)}, please sign in with {name} so prgate can check that you opened this "
            "pull request.</p>"
        )
        if submitted:
            return t.error_page(
                403, "Please sign in", "You are not signed in (or your session expired), so nothing was submitted.",
                summary + _sign_in(request, path, challenge.provider),
            )
        return t.page("Verify your pull request", summary + intro + _sign_in(request, path, challenge.provider))
    if refusal is Refusal.WRONG_PROVIDER:
        assert session is not None
        signed_with = t.PROVIDER_NAMES[session.provider]
        return t.error_page(
            403, f"Sign in with {name}",
            f"You are signed in with {signed_with} as @{session.login}, but this pull request is on {name}: only "
            f"@{author}'s {name} account can verify it. Sign in with {name} as @{author}.",
            summary + _sign_in(request, path, challenge.provider) + who,
        )
    if refusal is Refusal.WRONG_USER:
        assert session is not None
        return t.error_page(
            403, "Not your pull request",
            f"You are signed in as @{session.login}, but this pull request was opened by @{author}: only @{author} "
            f"can verify it. If you are @{author}, sign out and sign in to {name} with that account.",
            summary + who,
        )
    if refusal is Refusal.TOO_MANY_WRONG_ANSWERS:
        settings = request.app[SETTINGS]
        minutes = max(1, round(settings.verify_wrong_answers_window_seconds / 60))
        page = t.error_page(
            429, "Too many wrong answers",
            f"This challenge has had {settings.verify_wrong_answers_max} wrong answers recently. Nothing was "
            f"submitted. Please wait {minutes} minutes, read the question again, and try once more.",
            summary + who,
        )
        page.headers["Retry-After"] = str(settings.verify_wrong_answers_window_seconds)
        return page
    if refusal is Refusal.BAD_CSRF:
        return t.error_page(
            403, "Form expired",
            "This form was not sent from the verification page, or it has expired. Nothing was changed. "
            "Reload the page and submit it again.",
            summary + f'<p><a href="{t.esc(path)}">Reload the verification page</a></p>' + who,
        )

    assert session is not None
    form = t.challenge_form(
        path, codec.csrf_token(session, csrf_scope_for_challenge(challenge.challenge_id)), rules, answer, accepted
    )
    if refusal is None:
        return t.page("Verify your pull request", summary + form + who)
    message = _FORM_ERRORS[refusal]
    return t.page(
        "Verify your pull request", summary + f"<p class=error role=alert>{t.esc(message)}</p>" + form + who,
        refusal.http_status,
    )


@t.html_errors
async def verify_page(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    found = await _find(request, token)
    if found is None:
        return _not_found()
    session = await current_session(request, provider=None)  # either: the plan checks it is the challenge's
    return _respond(request, token, found, session, page_access(found.challenge, _user(session)), submitted=False)


@t.html_errors
async def verify_submit(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    found = await _find(request, token)
    if found is None:
        return _not_found()
    form = await request.post()
    codec = request.app[SESSIONS]
    session = await current_session(request, provider=None)
    if session is None:
        return _respond(request, token, found, None, Refusal.SIGNED_OUT, submitted=True)
    user = SignedInUser(id=session.user_id, login=session.login, provider=session.provider)
    scope = csrf_scope_for_challenge(found.challenge.challenge_id)
    if not codec.check_csrf(session, scope, _field(form, "csrf")):
        return _respond(request, token, found, session, Refusal.BAD_CSRF, submitted=True)

    answer = _field(form, "answer") or ""
    settings = request.app[SETTINGS]
    challenge_id = found.challenge.challenge_id
    window = settings.verify_wrong_answers_window_seconds
    async with request.app[DB_POOL].acquire() as conn:
        by_challenge, by_session = await wrong_answers.recent(conn, challenge_id, session.sid, window)
    if too_many_wrong_answers(by_challenge, by_session, settings.verify_wrong_answers_max):
        log.warning("verification refused: too many wrong answers",
                    extra={"challenge_id": challenge_id, "github_user_id": user.id, "session_id": session.sid})
        return _respond(request, token, found, session, Refusal.TOO_MANY_WRONG_ANSWERS, submitted=True)
    accepted = (_field(form, "accept") or "") in ("yes", "on", "true", "1")
    result = await verification.verify(
        request.app[DB_POOL], hash_token(token), user, VerifyForm(accept=accepted, answer=answer),
        verify_url=f"{settings.public_url.rstrip('/')}/verify/{token}",
        max_attempts=settings.action_max_attempts,
    )
    if result is None:
        return _not_found()
    if result is Refusal.WRONG_ANSWER:
        async with request.app[DB_POOL].acquire() as conn:
            await wrong_answers.record(conn, challenge_id, session.sid, user.id, window)
    if isinstance(result, Refusal):
        current = await _find(request, token) or found  # show the status as it is now (e.g. just verified)
        return _respond(request, token, current, session, result, submitted=True, answer=answer[:2000],
                        accepted=accepted)

    plan = result.plan
    log.info(
        "contributor verified",
        extra={
            "installation_id": plan.installation_id, "challenge_id": plan.challenge_id,
            "github_user_id": user.id, "provider": user.provider.value,
            "resolved": [c.challenge_id for c in plan.resolve],
            "action_ids": list(result.action_ids),
        },
    )
    links = _links(settings, found.challenge.provider)
    body = (
        f"<p class=ok role=status>Thanks, @{t.esc(user.login)}! You are verified. prgate will update "
        f"{'this pull request' if len(plan.resolve) == 1 else 'these pull requests'} in a moment:</p>"
        + t.resolved_list(plan.resolve, links)
        + f"<p>Pull requests you open later where this prgate {_TENANT_WORD[found.challenge.provider]} runs will not "
        "be gated.</p>"
        + t.signed_in_bar(session.login, codec.csrf_token(session, CSRF_SCOPE_LOGOUT), f"/verify/{token}")
    )
    return t.page("Verified", body)
