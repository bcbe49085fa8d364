"""The settings page of a repository, for its admins: ``/settings/{repo_id}`` and ``/settings/{owner}/{repo}``.

The same access check and the same write as the owner API (``http.owner.admin_access`` and
``write_settings``: signed in with GitHub, GitHub saying the user is an admin, by user id and
repository id); a form post must carry the session's CSRF token for this page (``auth.session``),
else 403 and nothing is written. A saved form redirects back to the page (303), which says so.
Server-rendered, no JavaScript; every value is escaped (``templates.esc``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from backend_api.auth.session import CSRF_SCOPE_LOGOUT, CSRF_SCOPE_SETTINGS_PAGE, Session
from backend_api.http.errors import ApiError
from backend_api.http.owner import RepoAccess, admin_access, repo_ref, settings_view, write_settings
from backend_api.keys import SESSIONS, SETTINGS
from backend_api.web import templates as t
from backend_api.web.revocation import current_session
from shared_contracts.owner import RepoSettings

log = logging.getLogger(__name__)

# GitHub's author_association values (what exempt_associations compares with).
ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER",
                "MANNEQUIN", "NONE")


@dataclass(frozen=True, slots=True)
class FieldHelp:
    name: str
    label: str
    help: str
    kind: str  # bool | seconds | logins | associations | text | line


FIELDS: tuple[FieldHelp, ...] = (
    FieldHelp("deadline_seconds", "Deadline (seconds)",
              "How long a contributor has to verify before the pull request is closed (or, warn-only, flagged). "
              "Between 10 s and 90 days; applies to challenges created after the change.", "seconds"),
    FieldHelp("warn_only", "Warn only",
              "Comment and set the commit status, but never close a pull request when its deadline passes.", "bool"),
    FieldHelp("gate_drafts", "Gate draft pull requests",
              "Off: a draft is left alone until it is marked ready for review.", "bool"),
    FieldHelp("exempt_associations", "Exempt author associations",
              "Authors GitHub associates with the repository this way are never gated.", "associations"),
    FieldHelp("exempt_bots", "Exempt bots",
              "Bot accounts (type Bot, or a login ending in [bot], e.g. dependabot[bot]) are never gated.", "bool"),
    FieldHelp("exempt_comment", "Comment on exempt pull requests",
              "Tell a whitelisted or exempt-association author in a comment that they are exempt.", "bool"),
    FieldHelp("whitelist_logins", "Whitelisted logins",
              "GitHub logins never gated, one per line or comma-separated. Each is resolved to its user id when "
              "saved; a login GitHub does not know refuses the save.", "logins"),
    FieldHelp("challenge_text", "Statement to accept",
              "What a contributor must read and accept (e.g. a CLA). Empty: prgate's default statement.", "text"),
    FieldHelp("challenge_question", "Question",
              "An optional question the contributor must answer. Empty: no question.", "line"),
    FieldHelp("reopen_on_verify", "Reopen on verify",
              "Reopen a pull request prgate closed once its author verifies.", "bool"),
)

_CSS = (
    "<style>main{max-width:48rem}.help{color:#59636e;font-size:.88rem;margin:.2rem 0 0}"
    "fieldset{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}"
    "legend{font-weight:600}textarea{width:100%;box-sizing:border-box;font-size:1rem;min-height:5rem}"
    "input[type=number]{width:12rem;padding:.4rem;font-size:1rem}.assoc label{display:inline-block;"
    "margin:.2rem 1rem .2rem 0}fieldset label{margin:.3rem 0}</style>"
)


def format_default(spec: FieldHelp, default: object) -> str:
    if spec.kind == "bool":
        return "on" if default else "off"
    if spec.kind == "seconds" and isinstance(default, int):
        return f"{default} s ({default // 3600} h)" if default % 3600 == 0 else f"{default} s"
    if isinstance(default, list):
        return ", ".join(map(str, default)) or "none"
    return "empty" if default in (None, "") else str(default)


def _control(spec: FieldHelp, value: Any) -> str:
    name = t.esc(spec.name)
    if spec.kind == "bool":
        checked = " checked" if value else ""
        return f"<label><input type=checkbox name={name} id={name} value=yes{checked}> {t.esc(spec.label)}</label>"
    label = f"<label for={name}>{t.esc(spec.label)}</label>"
    if spec.kind == "seconds":
        return label + f'<input type=number name={name} id={name} min=10 max={90 * 24 * 3600} value="{t.esc(value)}">'
    if spec.kind == "logins":
        text = "\n".join(value) if isinstance(value, list) else str(value or "")
        return label + f"<textarea name={name} id={name} rows=4>{t.esc(text)}</textarea>"
    if spec.kind == "associations":
        chosen = list(value) if isinstance(value, list) else []
        # A stored value GitHub no longer uses is shown too, so saving the page never drops it silently.
        options = [*ASSOCIATIONS, *(a for a in chosen if a not in ASSOCIATIONS)]
        boxes = "".join(
            f"<label><input type=checkbox name={name} value=\"{t.esc(a)}\"{' checked' if a in chosen else ''}>"
            f" {t.esc(a)}</label>"
            for a in options
        )
        return (f"<span id={name}>{t.esc(spec.label)}</span>"
                f"<div class=assoc role=group aria-labelledby={name}>{boxes}</div>")
    if spec.kind == "text":
        return label + f"<textarea name={name} id={name} rows=6 maxlength=20000>{t.esc(value or '')}</textarea>"
    return label + f'<input type=text name={name} id={name} maxlength=2000 value="{t.esc(value or "")}">'


def render_form(action: str, csrf: str, values: Mapping[str, Any], answer_set: bool) -> str:
    """The form over ``values`` (the stored settings, or what was just submitted)."""
    defaults = RepoSettings()
    parts = [f'<form method=post action="{t.esc(action)}"><input type=hidden name=csrf value="{t.esc(csrf)}">']
    for spec in FIELDS:
        parts.append(
            f"<fieldset><legend>{t.esc(spec.name)}</legend>{_control(spec, values.get(spec.name))}"
            f"<p class=help>{t.esc(spec.help)} Default: {t.esc(format_default(spec, getattr(defaults, spec.name)))}."
            "</p></fieldset>"
        )
    state = "An answer is stored." if answer_set else "No answer is stored: any non-empty answer is accepted."
    parts.append(
        "<fieldset><legend>challenge_answer</legend><label for=challenge_answer>Expected answer</label>"
        "<input type=text name=challenge_answer id=challenge_answer maxlength=2000 autocomplete=off value=\"\">"
        f"<p class=help>The answer to the question, compared ignoring case and extra spaces; stored only as a hash, "
        f"never shown. Leave empty to keep the stored one. {t.esc(state)} Default: none.</p>"
        "<label><input type=checkbox name=remove_answer value=yes> Remove the stored answer</label></fieldset>"
        "<p><button type=submit>Save settings</button></p></form>"
    )
    return "".join(parts)


_LOGIN_SPLIT = re.compile(r"[\s,]+")


def parse_form(form: Mapping[str, str], associations: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """The settings a submitted form asks for (RepoSettings' fields, not yet validated) and the answer
    to store (None: keep it; "": remove it). A checkbox left out is off, as browsers send it."""
    values: dict[str, Any] = {}
    for spec in FIELDS:
        raw = form.get(spec.name, "")
        match spec.kind:
            case "bool":
                values[spec.name] = spec.name in form
            case "seconds":
                values[spec.name] = raw.strip()  # RepoSettings parses (and refuses) the number
            case "logins":
                values[spec.name] = [login.removeprefix("@") for login in _LOGIN_SPLIT.split(raw) if login]
            case "associations":
                values[spec.name] = list(dict.fromkeys(associations))
            case _:
                text = raw.replace("\r\n", "\n")  # browsers send a textarea's line breaks as CRLF
                values[spec.name] = text if text.strip() else None
    if "remove_answer" in form:
        return values, ""
    answer = form.get("challenge_answer", "")
    return values, answer if answer.strip() else None


# ---- handlers ---------------------------------------------------------------------------------------------


def _who(request: web.Request, session: Session) -> str:
    codec = request.app[SESSIONS]
    return t.signed_in_bar(session.login, codec.csrf_token(session, CSRF_SCOPE_LOGOUT), request.path)


_TITLES = {401: "Please sign in", 403: "Not allowed", 404: "Repository not found", 422: "Not saved",
           429: "Too many requests", 502: "GitHub unavailable", 503: "Not configured"}


def _refused(request: web.Request, session: Session, exc: ApiError) -> web.Response:
    return t.error_page(exc.status, _TITLES.get(exc.status, "Not allowed"), exc.message, _who(request, session))


def _sign_in(request: web.Request, *, posted: bool) -> web.Response:
    why = "You are not signed in (or your session expired), so nothing was saved. " if posted else ""
    return t.page(
        "Repository settings",
        f"<p>{why}The settings page is for the repository's admins. Sign in with GitHub to continue.</p>"
        + t.sign_in_button(request.path),
        401,
    )


def _body(request: web.Request, access: RepoAccess, values: Mapping[str, Any], answer_set: bool,
          banner: str) -> str:
    links = t.Links(request.app[SETTINGS].github_web_url)
    csrf = request.app[SESSIONS].csrf_token(access.session, CSRF_SCOPE_SETTINGS_PAGE)
    name = access.repo_full_name
    return (
        _CSS + f'<p>Gate settings of <a href="{t.esc(links.repo(name))}">{t.esc(name)}</a> '
        f"<span class=muted>(repository {access.repo_id})</span>. They apply from the next decision on.</p>"
        + banner + render_form(request.path, csrf, values, answer_set) + _who(request, access.session)
    )


@t.html_errors
async def settings_page(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        return _sign_in(request, posted=False)
    try:
        access = await admin_access(request, session, repo_ref(request))
    except ApiError as exc:
        return _refused(request, session, exc)
    view = await settings_view(request, access)
    banner = "<p class=ok role=status>Settings saved.</p>" if request.query.get("saved") == "1" else ""
    return t.page("Repository settings", _body(request, access, view.model_dump(), view.challenge_answer_set, banner))


def _form_values(form: MultiDictProxy[Any]) -> tuple[dict[str, str], list[str]]:
    single = {k: v for k, v in form.items() if isinstance(v, str)}
    return single, [v for v in form.getall("exempt_associations", []) if isinstance(v, str)]


@t.html_errors
async def settings_submit(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        return _sign_in(request, posted=True)
    form = await request.post()
    raw_token = form.get("csrf")
    token = raw_token if isinstance(raw_token, str) else None
    if not request.app[SESSIONS].check_csrf(session, CSRF_SCOPE_SETTINGS_PAGE, token):
        log.warning("settings page: form without this session's CSRF token refused",
                    extra={"github_user_id": session.user_id, "path": request.path})
        return t.error_page(403, "Not saved", "This form did not come from your settings page (its security "
                            "token is missing or wrong), so nothing was saved. Open the page again and retry.",
                            _who(request, session))
    try:
        access = await admin_access(request, session, repo_ref(request))
    except ApiError as exc:
        return _refused(request, session, exc)
    single, associations = _form_values(form)
    values, answer = parse_form(single, associations)
    try:
        await write_settings(request, access, values, answer)
    except ApiError as exc:
        if exc.status != 422:
            return _refused(request, session, exc)
        problems = "".join(
            f"<li>{t.esc('.'.join(str(p) for p in d.get('loc', [])))}: {t.esc(d.get('msg', ''))}</li>"
            for d in exc.details or []
        )
        banner = f"<div class=error role=alert><p>Nothing was saved: {t.esc(exc.message)}.</p><ul>{problems}</ul></div>"
        view = await settings_view(request, access)
        return t.page("Repository settings", _body(request, access, values, view.challenge_answer_set, banner), 422)
    return web.Response(status=303, headers={"Location": f"{quote(request.path)}?saved=1", **t.SECURITY_HEADERS})


def add_settings_routes(app: web.Application) -> None:
    for path in ("/settings/{repo_id}", "/settings/{owner}/{repo}"):
        app.router.add_get(path, settings_page)
        app.router.add_post(path, settings_submit)
