"""Small HTML pages for github.com's account, repository and pull-request pages.

The links prgate's pages and comments give (`GITHUB_WEB_URL/{owner}`, `/{owner}/{repo}`,
`/{owner}/{repo}/pull/{n}`) lead a demo user here, where they see what happened: the pull
request's state, prgate's comments and its commit statuses. Only what the simulator holds is
shown; anything else answers the same JSON 404 as before these pages existed, so an API client
that reaches a wrong path still gets GitHub's error shape.

They are not routes: the API middleware asks `page_for` only when no route matched a GET, so no
API route, `/_sim/` route or provider mounted under a prefix later can ever be shadowed by them.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from aiohttp import web

from prgate.simulator.core.errors import NotFound
from prgate.simulator.github.model import PullRequest
from prgate.simulator.github.state import SimulatorState

# GitHub's login and repository-name alphabets (a login never starts with `_`: `/_sim` is not one).
_OWNER = r"(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)"
_REPO = r"(?P<repo>[A-Za-z0-9._-]+)"
_OWNER_PATH = re.compile(rf"/{_OWNER}/?")
_REPO_PATH = re.compile(rf"/{_OWNER}/{_REPO}/?")
_PULL_PATH = re.compile(rf"/{_OWNER}/{_REPO}/pull/(?P<number>[0-9]{{1,9}})/?")

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#1f2328}"
    "a{color:#0969da}.muted{color:#59636e}.state{display:inline-block;padding:2px 10px;border-radius:2em;"
    "color:#fff;font-weight:600}.open{background:#1f883d}.closed{background:#cf222e}.merged{background:#8250df}"
    ".comment{border:1px solid #d1d9e0;border-radius:6px;margin:1em 0}.comment header{background:#f6f8fa;"
    "padding:6px 12px;border-bottom:1px solid #d1d9e0}.comment pre{white-space:pre-wrap;margin:0;padding:12px;"
    "font:inherit}table{border-collapse:collapse}td,th{padding:4px 12px 4px 0;text-align:left}"
    ".success{color:#1f883d}.failure,.error{color:#cf222e}.pending{color:#9a6700}"
)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
             f"<style>{_STYLE}</style></head><body><p class=muted>GitHub simulator (prgate)</p>{body}</body></html>",
        content_type="text/html",
    )


def _pr_state(pr: PullRequest) -> str:
    return "merged" if pr.merged else pr.state


def _pr_row(full_name: str, pr: PullRequest) -> str:
    state = _pr_state(pr)
    return (f'<tr><td><span class="state {state}">{state}</span></td>'
            f'<td><a href="/{_esc(full_name)}/pull/{pr.number}">#{pr.number} {_esc(pr.title)}</a></td>'
            f'<td class=muted>by <a href="/{_esc(pr.user.login)}">{_esc(pr.user.login)}</a></td></tr>')


def _known_owner(state: SimulatorState, owner: str) -> str | None:
    """The owner's login as the simulator spells it, or None if it holds nothing of theirs."""
    wanted = owner.lower()
    for user in state.users.values():
        if user.login.lower() == wanted:
            return user.login
    for installation in state.installations.values():
        if installation.account.login.lower() == wanted:
            return installation.account.login
    for repo in state.repositories.values():
        if repo.owner_login.lower() == wanted:
            return repo.owner_login
    return None


def page_for(state: SimulatorState, path: str) -> web.Response | None:
    """The page at `path`, or None when the simulator holds nothing there (then: the JSON 404)."""
    try:
        if match := _PULL_PATH.fullmatch(path):
            return pull_page(state, f"{match['owner']}/{match['repo']}", int(match["number"]))
        if match := _REPO_PATH.fullmatch(path):
            return repo_page(state, f"{match['owner']}/{match['repo']}")
        if match := _OWNER_PATH.fullmatch(path):
            return owner_page(state, match["owner"])
    except NotFound:
        return None
    return None


def owner_page(state: SimulatorState, login: str) -> web.Response | None:
    owner = _known_owner(state, login)
    if owner is None:
        return None
    repos = sorted((r for r in state.repositories.values() if r.owner_login.lower() == owner.lower()),
                   key=lambda r: r.full_name.lower())
    authored = sorted((p for p in state.pulls.values() if p.user.login.lower() == owner.lower()),
                      key=lambda p: (p.repo_id, p.number))
    body = f"<h1>{_esc(owner)}</h1><h2>Repositories</h2>"
    body += ("<ul>" + "".join(
        f'<li><a href="/{_esc(r.full_name)}">{_esc(r.full_name)}</a> '
        f"<span class=muted>({len(state.list_pull_requests(r.full_name, state='all'))} pull requests)</span></li>"
        for r in repos) + "</ul>") if repos else "<p class=muted>None.</p>"
    if authored:
        body += "<h2>Pull requests opened</h2><table>" + "".join(
            _pr_row(state.repositories[p.repo_id].full_name, p) for p in authored if p.repo_id in state.repositories
        ) + "</table>"
    return _page(owner, body)


def repo_page(state: SimulatorState, full_name: str) -> web.Response:
    repo = state.repo_by_name(full_name)  # NotFound: no page
    pulls = state.list_pull_requests(repo.full_name, state="all", direction="asc")
    owner = repo.owner_login
    body = (f'<h1><a href="/{_esc(owner)}">{_esc(owner)}</a> / {_esc(repo.full_name.split("/", 1)[1])}</h1>'
            f"<p class=muted>{'private' if repo.private else 'public'} · default branch "
            f"{_esc(repo.default_branch)}</p><h2>Pull requests</h2>")
    body += ("<table>" + "".join(_pr_row(repo.full_name, p) for p in pulls) + "</table>") if pulls \
        else "<p class=muted>None yet.</p>"
    return _page(repo.full_name, body)


def pull_page(state: SimulatorState, full_name: str, number: int) -> web.Response:
    pr = state.get_pull_request(full_name, number)  # NotFound: no page
    repo = state.repositories[pr.repo_id]
    pr_state = _pr_state(pr)
    body = (f'<p><a href="/{_esc(repo.full_name)}">{_esc(repo.full_name)}</a></p>'
            f"<h1>{_esc(pr.title)} <span class=muted>#{pr.number}</span></h1>"
            f'<p><span class="state {pr_state}">{pr_state}</span>{" (draft)" if pr.draft else ""} '
            f'<a href="/{_esc(pr.user.login)}">{_esc(pr.user.login)}</a> '
            f"<span class=muted>({_esc(pr.author_association)}) wants to merge {_esc(pr.head_ref)} into "
            f"{_esc(pr.base_ref)} · opened {_when(pr.created_at)}"
            f"{' · closed ' + _when(pr.closed_at) if pr.closed_at else ''}</span></p>")
    if pr.body:
        body += f"<div class=comment><pre>{_esc(pr.body)}</pre></div>"
    comments = state.comments_for(repo.full_name, pr.number)
    body += "<h2>Conversation</h2>" + ("".join(
        f"<div class=comment id=issuecomment-{c.id}><header><strong>{_esc(c.user.login)}</strong> "
        f"<span class=muted>commented {_when(c.created_at)}"
        f"{' · edited ' + _when(c.updated_at) if c.updated_at != c.created_at else ''}</span></header>"
        f"<pre>{_esc(c.body)}</pre></div>"
        for c in comments) or "<p class=muted>No comments.</p>")
    # Newest first, one line per context: what GitHub's checks box shows for the head commit.
    latest: dict[str, str] = {}
    rows = ""
    for status in state.statuses_for(repo.full_name, pr.head_sha):
        if status.context in latest:
            continue
        latest[status.context] = status.state
        target = f' · <a href="{_esc(status.target_url)}">details</a>' if status.target_url else ""
        rows += (f'<tr><td class="{_esc(status.state)}">{_esc(status.state)}</td><td>{_esc(status.context)}</td>'
                 f"<td class=muted>{_esc(status.description or '')}{target}</td></tr>")
    body += f"<h2>Commit statuses <span class=muted>({_esc(pr.head_sha[:7])})</span></h2>"
    body += f"<table>{rows}</table>" if rows else "<p class=muted>None.</p>"
    return _page(f"{pr.title} · #{pr.number} · {repo.full_name}", body)
