"""The operator dashboard: server-rendered HTML over every tenant (docs/owner-api.md).

``/dashboard`` installations and Bitbucket workspaces and their repositories (with each repository
whose config file is invalid, and why), ``/dashboard/challenges`` pending challenges
with their time left and recently resolved ones, ``/dashboard/outbox`` the outbox's health and
recent failures, ``/dashboard/deliveries`` recent webhook deliveries and what was decided,
``/dashboard/reconcile`` the last reconciliation run with its repairs and errors.

Access: signed in with GitHub (the verification pages' session) and the login listed in
``PRGATE_OPERATORS``; otherwise a sign-in page (401) or a 403 page. The read models are in
``store.dashboard``; the render functions here are plain functions of them, and every value is
escaped (``templates.esc``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from aiohttp import web

from backend_api.auth.session import CSRF_SCOPE_LOGOUT, Session
from backend_api.challenges import messages
from backend_api.keys import DB_POOL, SESSIONS, SETTINGS
from backend_api.owner.access import is_operator
from backend_api.store import dashboard as store
from backend_api.store import reconcile as reconcile_store
from backend_api.store import repo_config as config_store
from backend_api.store.dashboard import (
    ActionRow,
    ChallengeRow,
    ChallengesOverview,
    DeliveryRow,
    InstallationRow,
    OutboxOverview,
    RepoRow,
    WorkspaceOverview,
)
from backend_api.store.reconcile import RunRow
from backend_api.store.repo_config import ConfigProblem
from backend_api.web import templates as t
from backend_api.web.revocation import current_session
from shared_contracts.actions import Provider
from shared_contracts.reconcile import Repair

PAGES = (
    ("/dashboard", "Installations"),
    ("/dashboard/challenges", "Challenges"),
    ("/dashboard/outbox", "Outbox"),
    ("/dashboard/deliveries", "Deliveries"),
    ("/dashboard/reconcile", "Reconciliation"),
)

# The verification pages' layout is a narrow card; tables need the width. (CSP allows inline styles.)
_CSS = (
    "<style>main{max-width:78rem}"
    "nav{margin:-.5rem 0 1.2rem}nav a{margin-right:1.2rem;color:#0969da;text-decoration:none}"
    "nav a[aria-current=page]{color:#1f2328;font-weight:600;border-bottom:2px solid #fd8c73}"
    "table{border-collapse:collapse;width:100%;margin:.4rem 0 1.6rem;font-size:.88rem}"
    "td a,td code{white-space:nowrap}"
    "th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}"
    "th{color:#59636e;font-weight:600;background:#f6f8fa}td.num,th.num{text-align:right;"
    "font-variant-numeric:tabular-nums}code{font-size:.85em}h2{font-size:1.1rem;margin:1.4rem 0 .3rem}"
    ".muted{color:#59636e}.bad{color:#cf222e}.warn{color:#9a6700}.good{color:#1a7f37}"
    ".errtext{white-space:pre-wrap;word-break:break-word;color:#cf222e;max-width:36rem}"
    ".cards{display:flex;gap:1rem;flex-wrap:wrap;margin:.5rem 0 1rem}.card{border:1px solid #d0d7de;"
    "border-radius:6px;padding:.6rem 1rem;min-width:8rem}.card b{display:block;font-size:1.5rem}"
    "</style>"
)


# ---- formatting -----------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A coarse human duration: ``2d 23h``, ``5h 12m``, ``4m 10s``, ``12s``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def time_left(deadline_at: datetime, now: datetime) -> str:
    seconds = (deadline_at - now).total_seconds()
    if seconds > 0:
        return f"{format_duration(seconds)} left"
    return f"overdue by {format_duration(-seconds)}"


def ago(moment: datetime, now: datetime) -> str:
    return f"{format_duration((now - moment).total_seconds())} ago"


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: object, cls: str = "") -> str:
    """A table cell holding ``value`` as escaped text."""
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{t.esc('—' if value is None else value)}</td>"


def _raw_cell(markup: str, cls: str = "") -> str:
    """A table cell holding trusted markup (built here, from escaped parts)."""
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{markup}</td>"


def _table(headers: Sequence[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    if not body:
        return f"<p class=muted>{t.esc(empty)}</p>"
    head = "".join(f"<th>{t.esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(href: str, text: str) -> str:
    return f'<a href="{t.esc(href)}">{t.esc(text)}</a>'


def _pr_link(links: t.Links, repo_full_name: str, number: int) -> str:
    return _link(links.pull(repo_full_name, number), f"{repo_full_name}#{number}")


def _card(label: str, value: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<div class=card><b{attr}>{t.esc(value)}</b>{t.esc(label)}</div>"


def nav(current: str) -> str:
    items = "".join(
        f'<a href="{t.esc(path)}"{" aria-current=page" if path == current else ""}>{t.esc(label)}</a>'
        for path, label in PAGES
    )
    return f"<nav>{items}</nav>"


# ---- pages (pure: read model in, HTML body out) ---------------------------------------------------------


def repo_install_status(installation_status: str, repo: RepoRow) -> str:
    """As ``GET /api/v1/repos/{id}/github-app-status`` resolves it: membership first."""
    if repo.removed_at is not None:
        return "NOT_INSTALLED"
    return installation_status


_STATUS_CLASS = {"ACTIVE": "good", "SUSPENDED": "warn", "DELETED": "bad", "NOT_INSTALLED": "bad",
                 "FAILED": "bad", "PENDING": "warn", "TIMED_OUT": "bad", "VERIFIED": "good", "EXEMPTED": "good",
                 "CANCELLED": "muted", "ACCEPTED": "good", "IGNORED": "muted"}


def _status_cell(status: str) -> str:
    return _cell(status, _STATUS_CLASS.get(status, ""))


def _challenge_status_cell(c: ChallengeRow) -> str:
    """A warn-only timeout left the pull request open: not the same outcome as a close, so not the same cell."""
    if c.status == "TIMED_OUT" and c.resolution == messages.RESOLUTION_TIMED_OUT_WARNED:
        return _cell("TIMED_OUT (left open)", "warn")
    return _status_cell(c.status)


def render_config_problems(problems: Sequence[ConfigProblem], links: t.Links,
                           bitbucket: tuple[t.Links, frozenset[int]] | None = None) -> str:
    """Every repository whose newest config file (`.github/prgate.yml`, Bitbucket's `.prgate.yml`) is
    invalid: the owner must fix it, and until then its last valid configuration stays in force
    (docs/configuration.md). ``bitbucket``: Bitbucket's links and which repository ids are its."""

    def repo_links(repo_id: int) -> t.Links:
        return bitbucket[0] if bitbucket is not None and repo_id in bitbucket[1] else links

    if not problems:
        return ""
    rows = (
        _raw_cell(_link(repo_links(p.repo_id).repo(p.repo_full_name), p.repo_full_name))
        + _cell(p.installation_id, "num")
        + _raw_cell(f"<span class=errtext>{t.esc(p.error)}</span>")
        + _raw_cell(f"<code>{t.esc(p.error_sha[:12])}</code>" if p.error_sha else "<span class=muted>—</span>")
        + _cell(when(p.error_at))
        + _raw_cell(_link(f"/settings/{p.repo_id}", "settings"))
        for p in problems
    )
    return (
        f"<h2 class=bad>Invalid config files ({len(problems)})</h2><p class=muted>The last valid configuration "
        "of each stays in force until the file is fixed on the default branch.</p>"
        + _table(("Repository", "Installation", "Error", "Commit", "Read", "Settings"), rows, "")
    )


def render_installations(installs: Sequence[InstallationRow], links: t.Links,
                         problems: Sequence[ConfigProblem] = (), workspaces: Sequence[WorkspaceOverview] = (),
                         bitbucket_links: t.Links | None = None) -> str:
    active = sum(i.status == "ACTIVE" for i in installs)
    repos = sum(r.removed_at is None for i in installs for r in i.repositories if i.status != "DELETED")
    repos += sum(r.removed_at is None for w in workspaces for r in w.repositories if w.status == "ACTIVE")
    pending = sum(r.pending_challenges for i in installs for r in i.repositories)
    pending += sum(r.pending_challenges for w in workspaces for r in w.repositories)
    invalid = {p.repo_id: p for p in problems}
    parts = [
        "<div class=cards>", _card("installations", len(installs)), _card("active", active),
        _card("Bitbucket workspaces", len(workspaces)),
        _card("repositories installed", repos), _card("pending challenges", pending),
        _card("invalid config files", len(problems), "bad" if problems else ""), "</div>",
        render_config_problems(problems, links, (
            bitbucket_links or links, frozenset(r.repo_id for w in workspaces for r in w.repositories))),
    ]
    if not installs:
        parts.append("<p class=muted>No installation yet: install the GitHub App on an account.</p>")
    for inst in installs:
        parts.append(
            f"<h2>{_link(links.user(inst.account_login), inst.account_login)} "
            f"<span class=muted>({t.esc(inst.account_type)}) · installation {inst.installation_id} · "
            f"{t.esc(inst.repository_selection)} repositories · installed {t.esc(when(inst.installed_at))}</span> "
            f'<span class="{_STATUS_CLASS.get(inst.status, "")}">{t.esc(inst.status)}</span></h2>'
        )
        rows = _repo_rows(inst.repositories, links, invalid, partial(repo_install_status, inst.status))
        parts.append(_table(
            ("Repository", "Id", "Visibility", "Install status", "Pending challenges", "Added", "Removed",
             "Config file", "Settings"),
            rows, "No repository recorded for this installation.",
        ))
    if workspaces:
        parts.append(render_workspaces(workspaces, bitbucket_links or links, invalid))
    return "".join(parts)


def _repo_rows(repositories: Sequence[RepoRow], links: t.Links, invalid: Mapping[int, ConfigProblem],
               status_of: Callable[[RepoRow], str]) -> Iterator[str]:
    """One table row per repository, either provider's; only where its install status comes from differs."""
    for r in repositories:
        yield (
            _raw_cell(_link(links.repo(r.full_name), r.full_name))
            + _cell(r.repo_id, "num")
            + _cell("private" if r.private else "public")
            + _status_cell(status_of(r))
            + _cell(r.pending_challenges, "num")
            + _cell(when(r.added_at))
            + _cell(when(r.removed_at) if r.removed_at else "")
            + (_raw_cell(f"<span class=bad title=\"{t.esc(invalid[r.repo_id].error)}\">invalid</span>")
               if r.repo_id in invalid else _cell(""))
            # By id: exact even when a missed rename left a name held twice (web.settings; its admins only).
            + _raw_cell(_link(f"/settings/{r.repo_id}", "settings"))
        )


def workspace_repo_status(workspace_status: str, repo: RepoRow) -> str:
    return "NOT_INSTALLED" if repo.removed_at is not None or workspace_status != "ACTIVE" else "ACTIVE"


_WORKSPACE_STATUS = {"ACTIVE": ("connected", "good"), "DISCONNECTED": ("disconnected", "bad")}


def render_workspaces(workspaces: Sequence[WorkspaceOverview], links: t.Links,
                      invalid: Mapping[int, ConfigProblem]) -> str:
    """The Bitbucket workspaces, as the installations above: connected or not, and each repository
    with its settings page (by id, as GitHub's)."""
    parts = ["<h2>Bitbucket workspaces</h2>"]
    for ws in workspaces:
        label, cls = _WORKSPACE_STATUS.get(ws.status, (ws.status, ""))
        since = ws.connected_at if ws.status == "ACTIVE" else ws.disconnected_at
        discovered = f" · discovered {when(ws.last_discovered_at)}" if ws.last_discovered_at else ""
        parts.append(
            f"<h3>{_link(links.repo(ws.slug), ws.slug)} <span class=muted>(workspace) · workspace {ws.tenant_id} · "
            f"{t.esc(label)} {t.esc(when(since))}{t.esc(discovered)}</span> "
            f'<span class="{cls}">{t.esc(label.upper())}</span></h3>'
        )
        if ws.last_error:
            parts.append(f"<p class=errtext>Last error: {t.esc(ws.last_error)}</p>")
        rows = _repo_rows(ws.repositories, links, invalid, partial(workspace_repo_status, ws.status))
        parts.append(_table(
            ("Repository", "Id", "Visibility", "Status", "Pending challenges", "Added", "Removed", "Config file",
             "Settings"),
            rows, "No repository discovered in this workspace.",
        ))
    return "".join(parts)


def _challenge_row(c: ChallengeRow, links: t.Links, now: datetime, *, pending: bool) -> str:
    common = (
        _raw_cell(_pr_link(links, c.repo_full_name, c.pr_number))
        + _raw_cell(_link(links.user(c.author_login), "@" + c.author_login))
    )
    if pending:
        overdue = c.deadline_at <= now
        return (
            common + _cell(time_left(c.deadline_at, now), "bad" if overdue else "")
            + _cell(when(c.deadline_at)) + _cell(ago(c.created_at, now)) + _cell(c.challenge_id, "num")
        )
    return (
        common + _challenge_status_cell(c) + _cell(c.resolution) + _cell(when(c.resolved_at))
        + _cell(c.challenge_id, "num")
    )


def render_challenges(overview: ChallengesOverview, links: t.Links) -> str:
    now = overview.now
    shown = len(overview.pending)
    more = "" if shown == overview.pending_total else f" (showing the {shown} with the nearest deadline)"
    return (
        f"<h2>Pending: {overview.pending_total}{t.esc(more)}</h2>"
        + _table(
            ("Pull request", "Author", "Time left", "Deadline", "Opened", "Challenge"),
            (_challenge_row(c, links, now, pending=True) for c in overview.pending),
            "No challenge is waiting for its contributor.",
        )
        + "<h2>Recently resolved</h2>"
        + _table(
            ("Pull request", "Author", "Status", "Resolution", "Resolved", "Challenge"),
            (_challenge_row(c, links, now, pending=False) for c in overview.resolved),
            "No challenge has been resolved yet.",
        )
    )


def _action_row(a: ActionRow, links: t.Links, now: datetime, *, failed: bool) -> str:
    moment = _cell(when(a.updated_at)) if failed else _cell(
        f"in {format_duration((a.next_attempt_at - now).total_seconds())}" if a.next_attempt_at > now else "now"
    )
    return (
        _cell(a.action_id, "num") + _cell(a.action_type) + _raw_cell(_pr_link(links, a.repo_full_name, a.pr_number))
        + _cell(a.installation_id, "num") + _cell(f"{a.attempt}/{a.max_attempts}", "num") + moment
        + _cell(a.last_error or "(no error recorded)", "errtext")
    )


def render_outbox(overview: OutboxOverview, links: t.Links) -> str:
    now = overview.now
    oldest = "—" if overview.oldest_pending_at is None else format_duration(
        (now - overview.oldest_pending_at).total_seconds()
    )
    cards = (
        "<div class=cards>"
        + _card(f"pending ({overview.pending_due} due now)", overview.pending, "warn" if overview.pending else "")
        + _card("leased", overview.leased)
        + _card("failed", overview.failed, "bad" if overview.failed else "")
        + _card("oldest pending", oldest)
        + "</div>"
    )
    headers = ("Action", "Type", "Pull request", "Installation", "Attempts")
    return (
        cards
        + "<h2>Recent failures</h2>"
        + _table((*headers, "Failed", "Error"), (_action_row(a, links, now, failed=True) for a in overview.failures),
                 "No action has failed.")
        + "<h2>Retrying</h2>"
        + _table((*headers, "Next attempt", "Last error"),
                 (_action_row(a, links, now, failed=False) for a in overview.retrying),
                 "No action is waiting for a retry.")
    )


def render_deliveries(deliveries: Sequence[DeliveryRow], now: datetime) -> str:
    rows = (
        _cell(ago(d.received_at, now)) + _raw_cell(f"<code>{t.esc(d.delivery_id)}</code>")
        + _cell(f"{d.event_name}.{d.action}")
        + _cell(d.repo_full_name or (f"repo {d.repo_id}" if d.repo_id is not None else None))
        + _cell(d.installation_id, "num") + _status_cell(d.status) + _cell(d.decision) + _cell(d.reason)
        + _cell(d.challenge_id, "num")
        for d in deliveries
    )
    return (
        f"<p class=muted>The {len(deliveries)} most recent deliveries.</p>"
        + _table(("Received", "Delivery", "Event", "Repository", "Installation", "Status", "Decision", "Reason",
                  "Challenge"), rows, "No webhook delivery has been received yet.")
    )


def _repair_target(repair: Repair, links: t.Links) -> str:
    if repair.repo_full_name and repair.pr_number is not None:
        return _pr_link(links, repair.repo_full_name, repair.pr_number)
    if repair.repo_full_name:
        return _link(links.repo(repair.repo_full_name), repair.repo_full_name)
    return "—"


def _scope(run: RunRow) -> str:
    return "all installations" if run.installation_id is None else f"installation {run.installation_id}"


def render_reconcile(runs: Sequence[RunRow], repairs: Sequence[Repair], now: datetime, links: t.Links) -> str:
    """The newest run (``runs[0]``) with its ``repairs`` and errors, then the runs before it."""
    if not runs:
        return ("<p class=muted>No reconciliation run yet: workers run one every RECONCILE_INTERVAL_SECONDS, "
                "or run <code>prgate reconcile</code>.</p>")
    last = runs[0]
    finished = (f"finished {ago(last.finished_at, now)}" if last.finished_at is not None
                else "not finished (still running, or its worker stopped)")
    parts = [
        f"<h2>Last run: {last.run_id} <span class=muted>({t.esc(last.trigger)}, {t.esc(_scope(last))}, "
        f"worker {t.esc(last.worker_id)})</span></h2>",
        f"<p>Started {t.esc(when(last.started_at))} ({t.esc(ago(last.started_at, now))}); {t.esc(finished)}. "
        f"Looked at {messages.plural(last.stats.installations, 'installation')}, "
        f"{messages.plural(last.stats.repositories, 'repository')}, "
        f"{messages.plural(last.stats.pull_requests, 'open pull request')}.</p>",
        "<div class=cards>", _card("repairs", len(repairs), "warn" if repairs else "good"),
        _card("errors", len(last.errors), "bad" if last.errors else "good"), "</div>",
        "<h2>Repairs</h2>",
        _table(("Kind", "Installation", "Repository / pull request", "Detail"), (
            _cell(r.kind.value) + _cell(r.installation_id, "num") + _raw_cell(_repair_target(r, links))
            + _cell(r.detail) for r in repairs
        ), "Nothing to repair: prgate agreed with GitHub."),
        "<h2>Errors</h2>",
        _table(("Installation", "Repository", "Error"), (
            _cell(e.installation_id, "num") + _cell(e.repo_full_name) + _cell(e.message, "errtext")
            for e in last.errors
        ), "No error."),
    ]
    if len(runs) > 1:
        parts += ["<h2>Earlier runs</h2>", _table(
            ("Run", "Started", "Finished", "Trigger", "Scope", "Repairs", "Errors"), (
                _cell(r.run_id, "num") + _cell(when(r.started_at)) + _cell(when(r.finished_at)) + _cell(r.trigger)
                + _cell(_scope(r)) + _cell(r.repairs, "num")
                + _cell(len(r.errors), "num bad" if r.errors else "num")
                for r in runs[1:]
            ), "")]
    return "".join(parts)


# ---- handlers ---------------------------------------------------------------------------------------------


Render = Callable[[web.Request], Awaitable[str]]


async def _access(request: web.Request) -> Session | web.Response:
    session = await current_session(request)
    if session is None:
        return t.page(
            "prgate dashboard",
            "<p>The dashboard is for the operators of this prgate. Sign in with GitHub to continue.</p>"
            + t.sign_in_button(request.path),
            401,
        )
    if not is_operator(request.app[SETTINGS].operators, session.login, session.user_id):
        return t.error_page(
            403, "Not an operator",
            f"You are signed in as @{session.login}, which is not one of this prgate's operators "
            "(PRGATE_OPERATORS).",
            _who(request, session),
        )
    return session


def _who(request: web.Request, session: Session) -> str:
    codec = request.app[SESSIONS]
    return t.signed_in_bar(session.login, codec.csrf_token(session, CSRF_SCOPE_LOGOUT), "/dashboard")


def _page(title: str, render: Render) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @t.html_errors
    async def handler(request: web.Request) -> web.StreamResponse:
        access = await _access(request)
        if isinstance(access, web.Response):
            return access
        body = await render(request)
        return t.page(title, _CSS + nav(request.path) + body + _who(request, access))

    handler.__name__ = f"dashboard_{title.lower().replace(' ', '_')}"
    return handler


def _links(request: web.Request) -> t.Links:
    return t.Links(request.app[SETTINGS].github_web_url)


async def _installations(request: web.Request) -> str:
    async with request.app[DB_POOL].acquire() as conn:
        installs = await store.installations_overview(conn)
        workspaces = await store.workspaces_overview(conn)
        problems = await config_store.problems(conn)
    bitbucket = t.Links(request.app[SETTINGS].bitbucket_web_url, Provider.BITBUCKET)
    return render_installations(installs, _links(request), problems, workspaces, bitbucket)


async def _challenges(request: web.Request) -> str:
    async with request.app[DB_POOL].acquire() as conn:
        overview = await store.challenges_overview(conn)
    return render_challenges(overview, _links(request))


async def _outbox(request: web.Request) -> str:
    async with request.app[DB_POOL].acquire() as conn:
        overview = await store.outbox_overview(conn)
    return render_outbox(overview, _links(request))


async def _deliveries(request: web.Request) -> str:
    async with request.app[DB_POOL].acquire() as conn:
        now = await conn.fetchval("SELECT now()")
        deliveries = await store.recent_deliveries(conn)
    return render_deliveries(deliveries, now)


async def _reconcile(request: web.Request) -> str:
    async with request.app[DB_POOL].acquire() as conn:
        now = await conn.fetchval("SELECT now()")
        runs = await reconcile_store.recent_runs(conn, 20)
        repairs = await reconcile_store.repairs_of(conn, runs[0].run_id, 1000) if runs else []
    return render_reconcile(runs, repairs, now, _links(request))


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", _page("Installations", _installations))
    app.router.add_get("/dashboard/challenges", _page("Challenges", _challenges))
    app.router.add_get("/dashboard/outbox", _page("Outbox", _outbox))
    app.router.add_get("/dashboard/deliveries", _page("Webhook deliveries", _deliveries))
    app.router.add_get("/dashboard/reconcile", _page("Reconciliation", _reconcile))
