"""The GitHub App manifest prgate registers itself with (docs/github-app.md).

The canonical data is here, in Python: the backend renders it for the manifest flow without a YAML
parser at run time (PyYAML is a dev dependency only). ``app.yml`` at the repository root is the
same manifest for humans and other tools; a test keeps the two equal.

``render_manifest`` fills in the URLs of one deployment. The webhook URL is a parameter of its
own because the receiver (``prgate bot``) may be served on another host than the backend.

The conversion answer (``POST /app-manifests/{code}/conversions``) is parsed into
:class:`AppCredentials`; its ``repr`` never shows the secrets, so logging one is harmless.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from backend_api.github.api import API_HEADERS, GitHubUnavailable
from backend_api.settings import BackendSettings

DEFAULT_NAME = "prgate"
DESCRIPTION = "Gates pull requests from contributors who have not verified yet."
WEBHOOK_PATH = "/webhooks/github"
OAUTH_CALLBACK_PATH = "/auth/github/callback"
MANIFEST_CALLBACK_PATH = "/github-app/callback"

# Repository permissions, plus the organization permission `members` (to tell members from outsiders).
DEFAULT_PERMISSIONS: dict[str, str] = {
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
    "contents": "read",  # .github/prgate.yml (docs/configuration.md)
    "metadata": "read",
    "members": "read",
}
# `installation` and `installation_repositories` are not listed: GitHub delivers them to every App
# and refuses them as subscriptions ("You cannot manually subscribe to this event").
DEFAULT_EVENTS: tuple[str, ...] = ("pull_request", "issue_comment", "push")
# What a manifest must carry for GitHub (and the simulator) to accept it.
REQUIRED_KEYS: tuple[str, ...] = ("url",)
MAX_NAME_LENGTH = 34  # GitHub's limit on an App's name


def render_manifest(public_url: str, webhook_url: str, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """The manifest for a deployment whose browser pages are at ``public_url`` and whose webhook
    receiver is at ``webhook_url`` (by default ``{BOT_PUBLIC_URL}/webhooks/github``)."""
    base = public_url.rstrip("/")
    return {
        "name": name[:MAX_NAME_LENGTH],
        "url": base,  # the App's homepage on GitHub: this deployment
        "description": DESCRIPTION,
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": f"{base}{MANIFEST_CALLBACK_PATH}",
        "callback_urls": [f"{base}{OAUTH_CALLBACK_PATH}"],
        "request_oauth_on_install": False,
        "public": True,
        "default_permissions": dict(DEFAULT_PERMISSIONS),
        "default_events": list(DEFAULT_EVENTS),
    }


def default_webhook_url(bot_public_url: str) -> str:
    """The receiver's webhook route under its public URL (BOT_PUBLIC_URL)."""
    return f"{bot_public_url.rstrip('/')}{WEBHOOK_PATH}"


class AppOwner(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    login: str = Field(min_length=1, max_length=100)


class AppCredentials(BaseModel):
    """The fields of GitHub's conversion answer prgate keeps; secrets are ``SecretStr``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int = Field(ge=1, le=2**63 - 1)
    slug: str = Field(min_length=1, max_length=200)
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr
    webhook_secret: SecretStr | None = None
    pem: SecretStr
    html_url: str = Field(min_length=1, max_length=2000)
    owner: AppOwner


class GitHubAppCredentials(BaseModel):
    """``GET /internal/v2/github-app/credentials/latest``: what ``prgate github-app create`` writes
    to its env file. Only the signed internal API ever answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: int
    slug: str
    client_id: str
    client_secret: str
    webhook_secret: str | None
    private_key_pem: str
    owner_login: str
    html_url: str
    created_at: str


class SetupClaimRequest(BaseModel):
    """``POST /internal/v2/github-app/setup-claims`` (admin key): allow one registration under
    ``claim`` for an hour. ``prgate github-app create`` sends it before printing the URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")


class SetupClaimResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    expires_at: str


# GitHub keeps a manifest code valid for an hour; a slow conversion answer is still worth waiting for.
GITHUB_TIMEOUT = aiohttp.ClientTimeout(total=15)


class ConversionRefused(Exception):
    """GitHub does not know the code (expired, already used, or never issued): start again (400)."""



async def convert(http: aiohttp.ClientSession, settings: BackendSettings, code: str) -> AppCredentials:
    """``POST /app-manifests/{code}/conversions`` (no authentication; the code is the credential)."""
    url = f"{settings.github_api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    try:
        async with http.post(url, headers=API_HEADERS, timeout=GITHUB_TIMEOUT) as resp:
            if resp.status in (404, 422):
                raise ConversionRefused(f"conversion answered {resp.status}")
            if resp.status != 201:
                raise GitHubUnavailable(f"conversion answered {resp.status}")
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise GitHubUnavailable(f"conversion unreachable: {type(exc).__name__}") from None
    try:
        return AppCredentials.model_validate(body)
    except ValidationError:
        raise GitHubUnavailable("conversion answered something that is not an App") from None
