"""GitHub's App manifest flow, as the simulator serves it.

- ``POST /settings/apps/new?state=…`` and ``POST /organizations/{org}/settings/apps/new?state=…``
  take the form field ``manifest`` (JSON). A manifest that is not a JSON object, or lacks ``url``
  or ``redirect_url`` (GitHub allows no ``redirect_url``; the simulator needs one to answer), is a
  422 page. Otherwise a confirmation page shows the App and posts back here with ``confirm=1``;
  the answer to that is a 302 to ``redirect_url?code=…&state=…``.
  Simulator extension: with ``confirm=1`` or ``login=`` in the query the page is skipped and the
  redirect comes at once (tests without a browser). ``login`` names the personal account that owns
  the App (default ``sim-user``); under ``/organizations/{org}/`` the organization owns it.
  ``GET`` on the same paths accepts the same parameters in the query.
- ``POST /app-manifests/{code}/conversions`` (REST, no authentication) answers 201 with the new
  App, its secrets and a freshly generated RSA private key. A code is single-use and expires after
  an hour; an unknown, used or expired code is a 404.

Apps created here can authenticate as Apps: :func:`registered_app_key` gives the app middleware
the public key for a JWT whose ``iss`` is one of their ids or client ids. Installations are not
per App in the simulator, so such an App can mint tokens for every simulated installation.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from prgate.simulator.core.types import JsonDict, iso
from prgate.simulator.github.model import SimUser, node_id
from prgate.simulator.github.render import Renderer
from prgate.simulator.github.state import SimulatorState

CODE_TTL_SECONDS = 3600
FIRST_APP_ID = 1_900_001
REQUIRED_KEYS = ("url", "redirect_url")
DEFAULT_OWNER = "sim-user"
_LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$")
_MAX_MANIFEST_CHARS = 64 * 1024
_CONVERSION_DOCS = "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest"


@dataclass(frozen=True, slots=True)
class PendingApp:
    """What a code stands for until it is converted."""

    manifest: JsonDict
    owner: SimUser
    expires_at: float


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    id: int
    slug: str
    name: str
    client_id: str
    public_key_pem: str
    owner: SimUser
    created_at: float
    manifest: JsonDict = field(default_factory=dict)


class ManifestStore:
    """Pending manifest codes and the Apps created from them, for one simulator instance."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.codes: dict[str, PendingApp] = {}
        self.apps: dict[int, RegisteredApp] = {}
        self._next_app_id = FIRST_APP_ID

    def grant(self, manifest: JsonDict, owner: SimUser) -> str:
        code = secrets.token_hex(10)
        self.codes[code] = PendingApp(manifest, owner, self.state.now() + CODE_TTL_SECONDS)
        return code

    def take(self, code: str) -> PendingApp | None:
        """The pending App for ``code``, which is spent either way; ``None`` if unknown or expired."""
        pending = self.codes.pop(code, None)
        if pending is None or pending.expires_at <= self.state.now():
            return None
        return pending

    def _slug(self, name: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
        taken = {app.slug for app in self.apps.values()} | {self.state.config.app_slug}
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        return slug

    def create(self, pending: PendingApp) -> tuple[RegisteredApp, str]:
        """A new App from ``pending`` and its private key (PKCS#1 PEM, as GitHub hands it out)."""
        app_id = self._next_app_id
        self._next_app_id += 1
        name = str(pending.manifest.get("name") or f"sim-app-{app_id}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        app = RegisteredApp(
            id=app_id, slug=self._slug(name), name=name, client_id=f"Iv1.{app_id:016x}", public_key_pem=public_pem,
            owner=pending.owner, created_at=self.state.now(), manifest=pending.manifest,
        )
        self.apps[app_id] = app
        return app, private_pem

    def for_issuer(self, issuer: str) -> RegisteredApp | None:
        for app in self.apps.values():
            if issuer in (str(app.id), app.client_id):
                return app
        return None


SIM_MANIFESTS = web.AppKey("prgate_sim_manifests", ManifestStore)


def registered_app_key(app: web.Application, token: str) -> tuple[str, tuple[str, ...]] | None:
    """The public key and accepted issuers for an App JWT from a manifest-created App, else ``None``."""
    store = app.get(SIM_MANIFESTS)
    if store is None or not store.apps:
        return None
    try:
        issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss"))
    except jwt.PyJWTError:
        return None
    registered = store.for_issuer(issuer)
    if registered is None:
        return None
    return registered.public_key_pem, (str(registered.id), registered.client_id)


# ---- validation ---------------------------------------------------------------------------------------


def parse_manifest(raw: str) -> JsonDict | str:
    """The manifest as a dict, or why it is refused."""
    if not raw:
        return "No manifest was posted (form field 'manifest')."
    if len(raw) > _MAX_MANIFEST_CHARS:
        return "The manifest is too large."
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return "The manifest is not valid JSON."
    if not isinstance(data, dict):
        return "The manifest must be a JSON object."
    missing = [key for key in REQUIRED_KEYS if not isinstance(data.get(key), str) or not data[key]]
    if missing:
        return f"The manifest is missing {', '.join(missing)}."
    redirect = URL(data["redirect_url"])
    if not redirect.is_absolute() or redirect.scheme not in ("http", "https"):
        return "redirect_url must be an absolute http(s) URL."
    hook = data.get("hook_attributes")
    if hook is not None and (not isinstance(hook, dict) or not isinstance(hook.get("url"), str)):
        return "hook_attributes.url is required when hook_attributes is given."
    for key in ("default_permissions",):
        if key in data and not isinstance(data[key], dict):
            return f"{key} must be an object."
    if "default_events" in data and not isinstance(data["default_events"], list):
        return "default_events must be a list."
    return data


# ---- pages ------------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem}"
        "input,button{font-size:1rem;padding:.4rem;margin:.3rem 0}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=document, status=status, content_type="text/html")


def _confirm_page(action: str, raw_manifest: str, manifest: JsonDict, state: str, org: str | None) -> web.Response:
    permissions = manifest.get("default_permissions") or {}
    events = manifest.get("default_events") or []
    items = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in permissions.items())
    owner_field = (
        f"<p>Owner: organization <strong>{html.escape(org)}</strong></p>"
        if org else '<label for=login>Your username</label><br><input id=login name=login value="sim-user" required>'
    )
    body = (
        f"<p>Create the GitHub App <strong>{html.escape(str(manifest.get('name') or '(unnamed)'))}</strong> "
        "(GitHub simulator)?</p>"
        f"<p>Permissions:</p><ul>{items}</ul>"
        f"<p>Events: {html.escape(', '.join(str(e) for e in events)) or '(none)'}</p>"
        f'<form method=post action="{html.escape(action)}">'
        f'<input type=hidden name=manifest value="{html.escape(raw_manifest)}">'
        f'<input type=hidden name=state value="{html.escape(state)}">'
        f"<input type=hidden name=confirm value=1>{owner_field}"
        "<br><button type=submit>Create GitHub App</button></form>"
    )
    return _page("Create GitHub App", body)


async def new_app(request: web.Request) -> web.Response:
    """``/settings/apps/new`` and ``/organizations/{org}/settings/apps/new``."""
    store = request.app[SIM_MANIFESTS]
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    org = request.match_info.get("org")
    if org is not None and not _LOGIN_RE.match(org):
        return _page("Not Found", "<p>No such organization.</p>", 404)
    raw = params.get("manifest", "")
    manifest = parse_manifest(raw)
    if isinstance(manifest, str):
        return _page("Invalid GitHub App manifest", f"<p role=alert>{html.escape(manifest)}</p>", 422)
    state = params.get("state", "")
    login = params.get("login")
    if params.get("confirm") != "1" and login is None:
        return _confirm_page(request.path, raw, manifest, state, org)
    if org is not None:
        owner = store.state.ensure_user(org, user_type="Organization")
    else:
        login = (login or DEFAULT_OWNER).strip()
        if not _LOGIN_RE.match(login):
            return _page("Invalid username", "<p role=alert>That is not a valid GitHub username.</p>", 422)
        owner = store.state.ensure_user(login)
    code = store.grant(manifest, owner)
    query = {"code": code, **({"state": state} if state else {})}
    raise web.HTTPFound(URL(str(manifest["redirect_url"])).update_query(query))


# ---- REST -------------------------------------------------------------------------------------------


def render_app(renderer: Renderer, registered: RegisteredApp, html_base: str) -> JsonDict:
    manifest = registered.manifest
    created = iso(registered.created_at)
    permissions = manifest.get("default_permissions")
    events = manifest.get("default_events")
    return {
        "id": registered.id,
        "slug": registered.slug,
        "node_id": node_id("Integration", registered.id),
        "client_id": registered.client_id,
        "owner": renderer.user(registered.owner),
        "name": registered.name,
        "description": str(manifest.get("description") or ""),
        "external_url": str(manifest.get("url") or ""),
        "html_url": f"{html_base.rstrip('/')}/apps/{registered.slug}",
        "created_at": created,
        "updated_at": created,
        "permissions": dict(permissions) if isinstance(permissions, dict) else {"metadata": "read"},
        "events": list(events) if isinstance(events, list) else [],
        "installations_count": 0,
    }


async def convert(request: web.Request) -> web.Response:
    """``POST /app-manifests/{code}/conversions``: the app's middleware let it through unauthenticated."""
    store = request.app[SIM_MANIFESTS]
    pending = store.take(request.match_info["code"])
    if pending is None:
        body = {"message": "Not Found", "documentation_url": _CONVERSION_DOCS, "status": "404"}
        return web.json_response(body, status=404)
    registered, private_pem = store.create(pending)
    renderer = Renderer(store.state, f"{request.scheme}://{request.host}")
    data = render_app(renderer, registered, store.state.config.html_base_url)
    hook = pending.manifest.get("hook_attributes")
    data.update({
        "client_secret": secrets.token_hex(20),
        "webhook_secret": secrets.token_hex(20) if isinstance(hook, dict) else None,
        "pem": private_pem,
    })
    return web.json_response(data, status=201)


# ---- wiring -------------------------------------------------------------------------------------------

def is_web_path(path: str) -> bool:
    """Browser-facing pages on github.com, not REST API routes: the API middleware lets them through."""
    return path.startswith("/settings/apps/") or (
        path.startswith("/organizations/") and "/settings/apps/" in path
    )


def setup(app: web.Application, state: SimulatorState) -> None:
    app[SIM_MANIFESTS] = ManifestStore(state)
    for path in ("/settings/apps/new", "/organizations/{org}/settings/apps/new"):
        app.router.add_get(path, new_app)
        app.router.add_post(path, new_app)
