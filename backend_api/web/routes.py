"""The browser routes, registered next to the API's route table (they are HTML, not in /openapi.json)."""

from __future__ import annotations

from aiohttp import web

from backend_api.web import auth, verify
from backend_api.web.manifest import add_manifest_routes
from backend_api.web.settings import add_settings_routes


def add_web_routes(app: web.Application) -> None:
    app.router.add_get("/verify/{token}", verify.verify_page)
    app.router.add_post("/verify/{token}", verify.verify_submit)
    app.router.add_get("/auth/github/login", auth.login)
    app.router.add_get("/auth/github/callback", auth.callback)
    app.router.add_get("/auth/bitbucket/login", auth.bitbucket_login)
    app.router.add_get("/auth/bitbucket/callback", auth.bitbucket_callback)
    app.router.add_post("/auth/logout", auth.logout)
    add_settings_routes(app)  # /settings/{repo_id}, /settings/{owner}/{repo} (docs/owner-api.md)
    add_manifest_routes(app)  # /github-app/new, /github-app/callback (docs/github-app.md)
