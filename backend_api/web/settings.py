"""The settings page of a repository, for its admins: ``/settings/{repo_id}`` and ``/settings/{owner}/{repo}``
(``/settings/{workspace}/{slug}?provider=bitbucket`` for a Bitbucket repository).

The same access check and the same write as the owner API (``http.owner.admin_access`` and
``write_settings``: signed in with the repository's provider, that provider saying the user is an
admin, by user id and repository id); signed out, the page offers the repository's provider's
sign-in. A form post must carry the session's CSRF token for this page (``auth.session``),
else 403 and nothing is written. A saved form redirects back to the page (303), which says so.
Server-rendered, no JavaScript; every value is escaped (``templates.esc``).

The repository's config file (`.github/prgate.yml`, on Bitbucket `.prgate.yml`) wins over these
settings, key by key (docs/configuration.md): a field the file sets is shown with the file's value,
read-only, naming the file; a save keeps the stored value of such a field as it was (a disabled
control is not posted), so it applies again once the file drops the key. An invalid file is
reported above the form, with its error. Each field's
help text is `RepoSettings`' description, the source the JSON Schema and the docs share (the
whitelist's says what a name is on the repository's provider; author associations, GitHub's alone,
are not shown for a Bitbucket repository and a save keeps them as stored).
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
from backend_api.http.owner import RepoAccess, admin_access, repo_ref, resolve, settings_view, write_settings
from backend_api.keys import DB_POOL, SESSIONS, SETTINGS
from backend_api.store import repo_config, repo_settings
from backend_api.web import templates as t
from backend_api.web.revocation import current_session
from shared_contracts.actions import Provider
from shared_contracts.owner import RepoSettings
from shared_contracts.repo_config import BITBUCKET_CONFIG_PATH, CONFIG_PATH

log = logging.getLogger(__name__)

# Where each provider's repository keeps its config file (docs/configuration.md, docs/bitbucket.md).
CONFIG_FILES = {Provider.GITHUB: CONFIG_PATH, Provider.BITBUCKET: BITBUCKET_CONFIG_PATH}
# Fields that mean nothing on a provider: author associations are GitHub's alone.
HIDDEN_FIELDS = {Provider.GITHUB: frozenset[str](), Provider.BITBUCKET: frozenset({"exempt_associations"})}
# What a whitelisted name is on each provider (the field's description is GitHub's wording).
_WHITELIST_HELP = {
    Provider.GITHUB: "GitHub logins never gated. Each is resolved to its user id when the settings are saved or "
                     "the file is read; a login GitHub does not know refuses the save (or makes the file invalid).",
    Provider.BITBUCKET: "Bitbucket nicknames (or Atlassian account ids) never gated. Each is matched, when the "
                        "settings are saved, to an account prgate knows (someone who opened or commented on a pull "
                        "request, or signed in, in a connected workspace); a name it knows no single account of "
                        "refuses the save: use the account id.",
}

# GitHub's author_association values (what exempt_associations compares with).
ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER",
                "MANNEQUIN", "NONE")


@dataclass(frozen=True, slots=True)
class FieldHelp:
    name: str
    label: str
    kind: str  # bool | seconds | logins | associations | text | line

    @property
    def help(self) -> str:
        """The field's description on `RepoSettings` (the one source of help texts), and how to type it."""
        return self.help_for(Provider.GITHUB)

    def help_for(self, provider: Provider) -> str:
        if self.kind != "logins":
            return RepoSettings.model_fields[self.name].description or ""
        return f"{_WHITELIST_HELP[provider]} One per line or comma-separated."


FIELDS: tuple[FieldHelp, ...] = (
    FieldHelp("deadline_seconds", "Deadline (seconds)", "seconds"),
    FieldHelp("warn_only", "Warn only", "bool"),
    FieldHelp("gate_drafts", "Gate draft pull requests", "bool"),
    FieldHelp("exempt_associations", "Exempt author associations", "associations"),
    FieldHelp("exempt_bots", "Exempt bots", "bool"),
    FieldHelp("exempt_comment", "Comment on exempt pull requests", "bool"),
    FieldHelp("whitelist_logins", "Whitelisted logins", "logins"),
    FieldHelp("challenge_text", "Statement to accept", "text"),
    FieldHelp("challenge_question", "Question", "line"),
    FieldHelp("reopen_on_verify", "Reopen on verify", "bool"),
)


@dataclass(frozen=True, slots=True)
class FileState:
    """What the repository's config file does to this page: the keys it sets (each with the
    repository whose file set it) and its newest error, if the newest read was invalid."""

    sets: Mapping[str, str]
    error: str | None = None


NO_FILE = FileState(sets={})

_CSS = (
    "<style>main{max-width:48rem}.help{color:#59636e;font-size:.88rem;margin:.2rem 0 0}"
    "fieldset{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}"
    "legend{font-weight:600}textarea{width:100%;box-sizing:border-box;font-size:1rem;min-height:5rem}"
    "input[type=number]{width:12rem;padding:.4rem;font-size:1rem}.assoc label{display:inline-block;"
    "margin:.2rem 1rem .2rem 0}fieldset label{margin:.3rem 0}fieldset.from-file{background:#f6f8fa}"
    ".tag{font-weight:400;font-size:.8rem;background:#ddf4ff;border-radius:1em;padding:.05rem .5rem}"
    ".file{font-size:.88rem;margin:.3rem 0 0}</style>"
)


def format_default(spec: FieldHelp, default: object) -> str:
    if spec.kind == "bool":
        return "on" if default else "off"
    if spec.kind == "seconds" and isinstance(default, int):
        return f"{default} s ({default // 3600} h)" if default % 3600 == 0 else f"{default} s"
    if isinstance(default, list):
        return ", ".join(map(str, default)) or "none"
    return "empty" if default in (None, "") else str(default)


def _control(spec: FieldHelp, value: Any, *, locked: bool = False) -> str:
    """The field's input; ``locked``: set by the config file, shown read-only (``disabled``: not posted)."""
    name = t.esc(spec.name)
    off = " disabled" if locked else ""
    if spec.kind == "bool":
        checked = " checked" if value else ""
        return (f"<label><input type=checkbox name={name} id={name} value=yes{checked}{off}> "
                f"{t.esc(spec.label)}</label>")
    label = f"<label for={name}>{t.esc(spec.label)}</label>"
    if spec.kind == "seconds":
        return label + (f'<input type=number name={name} id={name} min=10 max={90 * 24 * 3600} '
                        f'value="{t.esc(value)}"{off}>')
    if spec.kind == "logins":
        text = "\n".join(value) if isinstance(value, list) else str(value or "")
        return label + f"<textarea name={name} id={name} rows=4{off}>{t.esc(text)}</textarea>"
    if spec.kind == "associations":
        chosen = list(value) if isinstance(value, list) else []
        # A stored value GitHub no longer uses is shown too, so saving the page never drops it silently.
        options = [*ASSOCIATIONS, *(a for a in chosen if a not in ASSOCIATIONS)]
        boxes = "".join(
            f"<label><input type=checkbox name={name} value=\"{t.esc(a)}\"{' checked' if a in chosen else ''}{off}>"
            f" {t.esc(a)}</label>"
            for a in options
        )
        return (f"<span id={name}>{t.esc(spec.label)}</span>"
                f"<div class=assoc role=group aria-labelledby={name}>{boxes}</div>")
    if spec.kind == "text":
        return label + f"<textarea name={name} id={name} rows=6 maxlength=20000{off}>{t.esc(value or '')}</textarea>"
    return label + f'<input type=text name={name} id={name} maxlength=2000 value="{t.esc(value or "")}"{off}>'


def render_form(action: str, csrf: str, values: Mapping[str, Any], answer_set: bool, *,
                file: FileState = NO_FILE, in_force: Mapping[str, Any] | None = None,
                provider: Provider = Provider.GITHUB) -> str:
    """The form over ``values`` (the stored settings, or what was just submitted). A field ``file``
    sets shows the value in force (``in_force``) read-only, with where it comes from and the stored
    value it overrides. A field the provider has no such thing for is left out (and kept on save)."""
    defaults = RepoSettings()
    config_path = CONFIG_FILES[provider]
    parts = [f'<form method=post action="{t.esc(action)}"><input type=hidden name=csrf value="{t.esc(csrf)}">']
    for spec in FIELDS:
        if spec.name in HIDDEN_FIELDS[provider]:
            continue
        default = t.esc(format_default(spec, getattr(defaults, spec.name)))
        source = file.sets.get(spec.name)
        if source is None:
            parts.append(
                f"<fieldset><legend>{t.esc(spec.name)}</legend>{_control(spec, values.get(spec.name))}"
                f"<p class=help>{t.esc(spec.help_for(provider))} Default: {default}.</p></fieldset>"
            )
            continue
        shown = (in_force or values).get(spec.name)
        saved = format_default(spec, values.get(spec.name))
        parts.append(
            f"<fieldset class=from-file><legend>{t.esc(spec.name)} <span class=tag>set by the config file</span>"
            f"</legend>{_control(spec, shown, locked=True)}"
            f"<p class=file role=note>Set by <code>{t.esc(source)}:{t.esc(config_path)}</code>, which wins over "
            f"this page: change it in the file. The value saved here ({t.esc(saved)}) applies again if the file "
            "drops this key.</p>"
            f"<p class=help>{t.esc(spec.help_for(provider))} Default: {default}.</p></fieldset>"
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


def render_file_banner(file: FileState, provider: Provider = Provider.GITHUB) -> str:
    """Above the form: the file's error (the last valid configuration stays in force), and which
    fields it sets, naming the file where the provider keeps it."""
    parts = []
    if file.error is not None:
        parts.append(f"<div class=error role=alert><p>The config file {t.esc(CONFIG_FILES[provider])} is invalid: "
                     f"{t.esc(file.error)}</p><p>The last valid configuration stays in force until it is fixed on "
                     "the default branch.</p></div>")
    if file.sets:
        names = ", ".join(f"<code>{t.esc(k)}</code>" for k in file.sets)
        parts.append(f"<p class=note role=note>The config file <code>{t.esc(CONFIG_FILES[provider])}</code> sets "
                     f"{names}: those fields are read-only here "
                     "(the file wins).</p>")
    return "".join(parts)


def file_state(row: repo_config.ConfigRow | None) -> FileState:
    if row is None:
        return NO_FILE
    # In the page's order, whatever order the file wrote them in.
    sets = {spec.name: row.key_sources[spec.name] for spec in FIELDS
            if spec.name in row.key_sources and row.config is not None}
    return FileState(sets=sets, error=row.last_error)


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
           429: "Too many requests", 502: "Provider unavailable", 503: "Not configured"}


def _self(request: web.Request) -> str:
    """This page's own address: its path, and ``?provider=bitbucket`` when a name needs it."""
    if "repo_id" not in request.match_info and request.query.get("provider") == Provider.BITBUCKET.value:
        return f"{request.path}?provider={Provider.BITBUCKET.value}"
    return request.path


def _refused(request: web.Request, session: Session, exc: ApiError) -> web.Response:
    text = exc.message
    if exc.error == "wrong_provider":  # the other provider's account is the one that can be admin here
        other = Provider.BITBUCKET if session.provider is Provider.GITHUB else Provider.GITHUB
        return t.error_page(exc.status, "Not allowed", text, _who(request, session)
                            + t.sign_in_button(_self(request), other))
    return t.error_page(exc.status, _TITLES.get(exc.status, "Not allowed"), text, _who(request, session))


async def _page_provider(request: web.Request) -> Provider:
    """Whose sign-in a signed-out visitor is offered: the repository's provider (GitHub's when
    prgate knows no such repository: the page then says so after sign-in, as before)."""
    try:
        ref = repo_ref(request)
    except ApiError:
        return Provider.GITHUB
    if ref.provider is not None:
        return ref.provider
    async with request.app[DB_POOL].acquire() as conn:
        target = await resolve(conn, ref)
    return Provider.GITHUB if target is None else target.provider


async def _sign_in(request: web.Request, *, posted: bool) -> web.Response:
    provider = await _page_provider(request)
    name = t.PROVIDER_NAMES[provider]
    why = "You are not signed in (or your session expired), so nothing was saved. " if posted else ""
    return t.page(
        "Repository settings",
        f"<p>{why}The settings page is for the repository's admins. Sign in with {name} to continue.</p>"
        + t.sign_in_button(_self(request), provider),
        401,
    )


def _links(request: web.Request, provider: Provider) -> t.Links:
    settings = request.app[SETTINGS]
    if provider is Provider.BITBUCKET:
        return t.Links(settings.bitbucket_web_url, Provider.BITBUCKET)
    return t.Links(settings.github_web_url)


def _body(request: web.Request, access: RepoAccess, values: Mapping[str, Any], answer_set: bool,
          banner: str, file: FileState, in_force: Mapping[str, Any]) -> str:
    links = _links(request, access.provider)
    csrf = request.app[SESSIONS].csrf_token(access.session, CSRF_SCOPE_SETTINGS_PAGE)
    name = access.repo_full_name
    return (
        _CSS + f'<p>Gate settings of <a href="{t.esc(links.repo(name))}">{t.esc(name)}</a> '
        f"<span class=muted>({t.PROVIDER_NAMES[access.provider]} repository {access.repo_id})</span>. "
        "They apply from the next decision on.</p>"
        + banner + render_file_banner(file, access.provider)
        + render_form(_self(request), csrf, values, answer_set, file=file, in_force=in_force,
                      provider=access.provider)
        + _who(request, access.session)
    )


@t.html_errors
async def settings_page(request: web.Request) -> web.StreamResponse:
    session = await current_session(request, provider=None)  # which provider may act: admin_access says
    if session is None:
        return await _sign_in(request, posted=False)
    try:
        access = await admin_access(request, session, repo_ref(request))
    except ApiError as exc:
        return _refused(request, session, exc)
    view = await settings_view(request, access)
    stored, file = await _stored_and_file(request, access)
    banner = "<p class=ok role=status>Settings saved.</p>" if request.query.get("saved") == "1" else ""
    return t.page("Repository settings", _body(request, access, stored.model_dump(), view.challenge_answer_set,
                                               banner, file, view.model_dump()))


async def _stored_and_file(request: web.Request, access: RepoAccess) -> tuple[RepoSettings, FileState]:
    """This page's own stored settings (what the form edits) and what the config file does to them."""
    async with request.app[DB_POOL].acquire() as conn:
        stored = await repo_settings.get(conn, access.repo_id)
        row = await repo_config.get(conn, access.repo_id)
    return stored, file_state(row)


def _form_values(form: MultiDictProxy[Any]) -> tuple[dict[str, str], list[str]]:
    single = {k: v for k, v in form.items() if isinstance(v, str)}
    return single, [v for v in form.getall("exempt_associations", []) if isinstance(v, str)]


@t.html_errors
async def settings_submit(request: web.Request) -> web.StreamResponse:
    session = await current_session(request, provider=None)
    if session is None:
        return await _sign_in(request, posted=True)
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
    stored, file = await _stored_and_file(request, access)
    # A field the file sets is not posted (disabled), nor one the provider has no such thing for (not
    # shown): keep what is stored, never what the browser left out.
    values.update({name: getattr(stored, name) for name in (*file.sets, *HIDDEN_FIELDS[access.provider])})
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
        return t.page("Repository settings", _body(request, access, values, view.challenge_answer_set, banner, file,
                                                   view.model_dump()), 422)
    query = _self(request).partition("?")[2]
    location = f"{quote(request.path)}?{query + '&' if query else ''}saved=1"
    return web.Response(status=303, headers={"Location": location, **t.SECURITY_HEADERS})


def add_settings_routes(app: web.Application) -> None:
    for path in ("/settings/{repo_id}", "/settings/{owner}/{repo}"):
        app.router.add_get(path, settings_page)
        app.router.add_post(path, settings_submit)
