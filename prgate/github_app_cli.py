"""``prgate github-app create``: register prgate's GitHub App from its manifest (docs/github-app.md).

It needs a running backend and an admin key (``PRGATE_ADMIN_SECRETS``, the first signs). It
registers a random one-time ``claim`` with the backend (``POST /internal/v2/github-app/setup-claims``),
checks that the backend answers at its public URL, prints the backend's ``/github-app/new`` URL with it
for the user to open in a browser (signing in first keeps the claim: the sign-in returns to it), polls
``GET /internal/v2/github-app/credentials/latest?claim=…`` until the App registered under that
claim appears (the backend hands it out once and deletes it), then writes an env file
(``GITHUB_APP_ID``, ``GITHUB_CLIENT_ID``,
``GITHUB_CLIENT_SECRET``, ``GITHUB_WEBHOOK_SECRET``, ``GITHUB_PRIVATE_KEY_PATH``) and the private
key in a file of its own, both mode 0600. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlencode

if TYPE_CHECKING:
    import aiohttp

    from backend_api.github.manifest import GitHubAppCredentials

CREDENTIALS_PATH = "/internal/v2/github-app/credentials/latest"
SETUP_CLAIMS_PATH = "/internal/v2/github-app/setup-claims"
ADMIN_KEYS_VARIABLE = "PRGATE_ADMIN_SECRETS"
# What _create reads from the environment (it has no settings model): its `--help` lists them.
READS = (ADMIN_KEYS_VARIABLE, "BACKEND_URL", "BACKEND_PUBLIC_URL")
DEFAULT_BACKEND_URL = "http://127.0.0.1:8080"
DEFAULT_OUTPUT = ".env.github-app"
KEY_FILE_NAME = "github-app.pem"
POLL_INTERVAL_SECONDS = 2.0
DEFAULT_TIMEOUT_SECONDS = 900.0
REQUEST_TIMEOUT_SECONDS = 10.0


class CliError(Exception):
    """A failure to report to the user in one sentence (exit status 1)."""


# ---- pure pieces ------------------------------------------------------------------------------------


def new_app_url(public_url: str, claim: str, org: str | None = None, webhook_url: str | None = None) -> str:
    query = {"claim": claim, **({"org": org} if org else {}), **({"webhook_url": webhook_url} if webhook_url else {})}
    return f"{public_url.rstrip('/')}/github-app/new?{urlencode(query)}"


def env_file_text(creds: GitHubAppCredentials, key_path: Path, now: datetime) -> str:
    lines = [
        f"# Written by `prgate github-app create` on {now.strftime('%Y-%m-%d %H:%M:%SZ')}",
        f"# GitHub App {creds.slug} (owner @{creds.owner_login}): {creds.html_url}",
        f"GITHUB_APP_ID={creds.app_id}",
        f"GITHUB_CLIENT_ID={creds.client_id}",
        f"GITHUB_CLIENT_SECRET={creds.client_secret}",
        f"GITHUB_WEBHOOK_SECRET={creds.webhook_secret or ''}",
        f"GITHUB_PRIVATE_KEY_PATH={key_path}",
    ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600 from the first byte)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_credentials(
    creds: GitHubAppCredentials, output: Path, key_path: Path | None = None, *, force: bool = False,
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Write the env file and the key file; both mode 0600. Existing files are kept unless ``force``."""
    output = output.expanduser().absolute()
    key_path = (key_path or output.with_name(KEY_FILE_NAME)).expanduser().absolute()
    if not force:
        existing = [str(p) for p in (output, key_path) if p.exists()]
        if existing:
            raise CliError(f"{' and '.join(existing)} already exist(s); pass --force to overwrite")
    output.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pem = creds.private_key_pem if creds.private_key_pem.endswith("\n") else creds.private_key_pem + "\n"
    _write_private(key_path, pem)
    _write_private(output, env_file_text(creds, key_path, now or datetime.now(UTC)))
    return output, key_path


# ---- the backend -------------------------------------------------------------------------------------


async def fetch_credentials(
    session: aiohttp.ClientSession, backend_url: str, secret: str, claim: str
) -> GitHubAppCredentials | None:
    """The App registered under ``claim``, ``None`` while there is none; ``CliError`` when the backend
    refuses us for good (wrong secret)."""
    import aiohttp

    from backend_api.github.manifest import GitHubAppCredentials
    from shared_contracts import signing

    path_qs = f"{CREDENTIALS_PATH}?{urlencode({'claim': claim})}"
    headers = signing.sign(secret, "GET", path_qs, b"")
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with session.get(backend_url.rstrip("/") + path_qs, headers=headers, timeout=timeout) as resp:
        text = await resp.text()
        if resp.status == 404:
            return None
        _refused(resp.status, text)
    return GitHubAppCredentials.model_validate_json(text)


def _refused(status: int, text: str) -> None:
    if status in (401, 403):
        raise CliError(
            f"the backend refused our signature ({status}): {ADMIN_KEYS_VARIABLE} must hold one of the "
            "backend's admin keys"
        )
    if status != 200:
        raise CliError(f"the backend answered {status}: {text[:300]}")


async def register_claim(session: aiohttp.ClientSession, backend_url: str, secret: str, claim: str) -> None:
    """Open ``claim`` on the backend: the browser may then register one App under it, within an hour."""
    import json

    import aiohttp

    from shared_contracts import signing

    body = json.dumps({"claim": claim}).encode()
    headers = {"Content-Type": "application/json", **signing.sign(secret, "POST", SETUP_CLAIMS_PATH, body)}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    try:
        async with session.post(
            backend_url.rstrip("/") + SETUP_CLAIMS_PATH, data=body, headers=headers, timeout=timeout
        ) as resp:
            _refused(resp.status, await resp.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"the backend at {backend_url} is not answering: {type(exc).__name__}") from None


async def check_public_url(session: aiohttp.ClientSession, public_url: str) -> None:
    """The URL we are about to print must open: a prgate backend answers its public OpenAPI document
    there (the chart's ingress routes it). Checked before printing, not after a 900 s wait."""
    import aiohttp

    url = f"{public_url.rstrip('/')}/openapi.json"
    hint = "set BACKEND_PUBLIC_URL (or --public-url) to where a browser reaches the backend"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    try:
        async with session.get(url, timeout=timeout) as resp:
            status = resp.status
            doc = await resp.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CliError(f"{public_url} is not answering ({type(exc).__name__}): {hint}") from None
    title = doc.get("info", {}).get("title") if isinstance(doc, dict) else None
    if status != 200 or not (isinstance(title, str) and title.startswith("prgate")):
        raise CliError(f"{url} answered {status}, not prgate's API document: {hint}")


@dataclass
class Poller:
    """Polls until the App exists or ``timeout`` passes; an unreachable backend is retried, told once."""

    fetch: Callable[[], Awaitable[GitHubAppCredentials | None]]
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    interval: float = POLL_INTERVAL_SECONDS
    out: TextIO = sys.stdout
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def run(self) -> GitHubAppCredentials:
        import aiohttp

        deadline = self.clock() + self.timeout
        warned = False
        while True:
            try:
                creds = await self.fetch()
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not warned:
                    print(f"  (the backend is not answering: {type(exc).__name__}; still trying)", file=self.out)
                    warned = True
                creds = None
            if creds is not None:
                return creds
            if self.clock() >= deadline:
                raise CliError(
                    f"no App was registered within {int(self.timeout)} s; open the URL again or pass a longer --timeout"
                )
            await self.sleep(self.interval)


# ---- the command -------------------------------------------------------------------------------------


async def _create(args: argparse.Namespace, out: TextIO) -> int:
    import aiohttp

    secret_list = [s.strip() for s in os.environ.get(ADMIN_KEYS_VARIABLE, "").split(",") if s.strip()]
    if not secret_list:
        raise CliError(f"{ADMIN_KEYS_VARIABLE} is not set: the CLI signs its requests to the backend with it")
    backend_url: str = args.backend_url or os.environ.get("BACKEND_URL") or DEFAULT_BACKEND_URL
    public_url: str = args.public_url or os.environ.get("BACKEND_PUBLIC_URL") or backend_url
    claim = secrets.token_urlsafe(24)
    url = new_app_url(public_url, claim, args.org, args.webhook_url)
    async with aiohttp.ClientSession() as session:
        await register_claim(session, backend_url, secret_list[0], claim)
        await check_public_url(session, public_url)
        print("Open this URL in a browser and confirm on GitHub (it works once, for an hour):\n", file=out)
        print(f"  {url}\n", file=out)
        print(f"Waiting up to {int(args.timeout)} s for the App to be created…", file=out, flush=True)
        poller = Poller(
            lambda: fetch_credentials(session, backend_url, secret_list[0], claim), timeout=args.timeout, out=out
        )
        creds = await poller.run()
    env_path, key_path = write_credentials(creds, Path(args.output), args.key_output, force=args.force)
    install = f"{creds.html_url.rstrip('/')}/installations/new"
    print(
        f"\nGitHub App {creds.slug} (id {creds.app_id}, owner @{creds.owner_login}) created.\n"
        f"  wrote {env_path} (mode 0600)\n"
        f"  wrote {key_path} (mode 0600)\n\n"
        "Next:\n"
        f"  1. load {env_path.name} into every prgate process (or, with Helm, put the values in the chart and the\n"
        "     secrets in its Secret: docs/operations.md) and restart them;\n"
        f"  2. install the App: {install}",
        file=out,
    )
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_create(args, sys.stdout))
    except CliError as exc:
        print(f"prgate github-app create: {exc}", file=sys.stderr)
        return 1


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``prgate github-app create …``"""
    from prgate.cli_env import epilog

    about = "register prgate's GitHub App from its manifest"
    group = sub.add_parser("github-app", help=about, description=about)
    actions = group.add_subparsers(dest="github_app_command", required=True)
    create_about = "create the App through a running backend and write its env file"
    create = actions.add_parser("create", help=create_about, description=create_about,
                                epilog=epilog(READS), formatter_class=argparse.RawDescriptionHelpFormatter)
    create.add_argument("--org", help="register the App under this organization (default: your account)")
    create.add_argument("--public-url", help="where a browser reaches the backend (default: BACKEND_PUBLIC_URL, "
                                             "else the backend URL)")
    create.add_argument("--webhook-url", help="the App's webhook URL (default: the backend's "
                                              "{BOT_PUBLIC_URL}/webhooks/github, the receiver)")
    create.add_argument("--backend-url", help=f"the backend's internal API (default: BACKEND_URL, else "
                                              f"{DEFAULT_BACKEND_URL})")
    create.add_argument("--output", default=DEFAULT_OUTPUT, help=f"env file to write (default: {DEFAULT_OUTPUT})")
    create.add_argument("--key-output", type=Path, help=f"private key file (default: {KEY_FILE_NAME} next to --output)")
    create.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds to wait (default 900)")
    create.add_argument("--force", action="store_true", help="overwrite existing files")
    create.set_defaults(func=cmd_create)
