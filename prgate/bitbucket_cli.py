"""``prgate bitbucket connect|disconnect|list``: Bitbucket workspaces as tenants (docs/bitbucket.md, "Tenancy").

The CLI calls the backend's operator API (``/api/v1/bitbucket/workspaces``) signed with the admin key
(``PRGATE_ADMIN_SECRETS``, the first signs; ``BACKEND_URL``, as `prgate github-app create`). The token
comes from ``BITBUCKET_ACCESS_TOKEN`` or ``--token-file`` and is never printed. Exit status: 0 done,
1 the backend or Bitbucket refused (the reason on one line), 2 a usage or configuration mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from shared_contracts import signing

WORKSPACES_PATH = "/api/v1/bitbucket/workspaces"
ADMIN_KEYS_VARIABLE = "PRGATE_ADMIN_SECRETS"
TOKEN_VARIABLE = "BITBUCKET_ACCESS_TOKEN"
DEFAULT_BACKEND_URL = "http://127.0.0.1:8080"
# Connecting lists every repository and registers the hook on Bitbucket: more than one round trip.
REQUEST_TIMEOUT_SECONDS = 120.0


class UsageError(Exception):
    """The operator's mistake in how the command was called (exit status 2)."""


class Refused(Exception):
    """The backend (or Bitbucket through it) said no (exit status 1)."""


def read_token(token_file: str | None, environ: dict[str, str]) -> str:
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--token-file {token_file!r} cannot be read ({exc.strerror or exc})") from None
        if not token:
            raise UsageError(f"--token-file {token_file!r} is empty")
        return token
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise UsageError(f"give the workspace's access token in {TOKEN_VARIABLE} or with --token-file F")
    return token


def _admin_key(environ: dict[str, str]) -> str:
    keys = [k.strip() for k in environ.get(ADMIN_KEYS_VARIABLE, "").split(",") if k.strip()]
    if not keys:
        raise UsageError(f"{ADMIN_KEYS_VARIABLE} is not set: the CLI signs its calls to the backend with it")
    return keys[0]


async def call(backend_url: str, key: str, method: str, path_qs: str, body: Any = None) -> Any:
    """One signed call; the backend's error message as `Refused`."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = dict(signing.sign(key, method, path_qs, data))
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = backend_url.rstrip("/") + path_qs
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as session, \
                session.request(method, url, data=data or None, headers=headers) as resp:
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Refused(f"cannot reach the backend at {backend_url} ({type(exc).__name__}); is it running? "
                      "(BACKEND_URL)") from None
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {}
    if status >= 400:
        message = answer.get("message") if isinstance(answer, dict) else None
        retry = resp.headers.get("Retry-After")
        hint = f" (retry in {retry} s)" if retry else ""
        if status == 401:
            hint = f" ({ADMIN_KEYS_VARIABLE} must hold one of the backend's admin keys)"
        raise Refused(f"the backend answered {status}: {message or text[:200] or 'no message'}{hint}")
    return answer


async def connect(backend_url: str, key: str, workspace: str, token: str) -> dict[str, Any]:
    """`prgate bitbucket connect`'s call (also the demo's, prgate/demo.py): the backend's answer."""
    answer: dict[str, Any] = await call(backend_url, key, "POST", WORKSPACES_PATH,
                                        {"workspace": workspace, "token": token})
    return answer


def connected_line(answer: dict[str, Any]) -> str:
    added, removed = answer.get("added_repositories", []), answer.get("removed_repositories", [])
    change = f"; {len(added)} added, {len(removed)} removed since last time" if added or removed else ""
    return (f"connected Bitbucket workspace {answer['slug']} (tenant {answer['tenant_id']}): "
            f"{answer['repositories']} repositories, webhook {answer['hook']}{change}")


def _disconnected_line(answer: dict[str, Any]) -> str:
    hook = "webhook deleted" if answer["hook_deleted"] else (
        "the webhook could NOT be deleted (the stored token was refused): delete it in the workspace's settings")
    purged = "; its data purged" if answer["purged"] else "; its data kept (--purge deletes it)"
    return (f"disconnected Bitbucket workspace {answer['slug']}: {hook}, {answer['cancelled_challenges']} pending "
            f"challenges and {answer['cancelled_actions']} actions cancelled{purged}")


async def _run(args: argparse.Namespace, environ: dict[str, str], out: TextIO) -> None:
    key = _admin_key(environ)
    backend_url: str = args.backend_url or environ.get("BACKEND_URL") or DEFAULT_BACKEND_URL
    if args.action == "connect":
        token = read_token(args.token_file, environ)
        print(connected_line(await connect(backend_url, key, args.workspace, token)), file=out)
    elif args.action == "disconnect":
        path = f"{WORKSPACES_PATH}/{quote(args.workspace, safe='')}" + ("?purge=true" if args.purge else "")
        print(_disconnected_line(await call(backend_url, key, "DELETE", path)), file=out)
    else:
        answer = await call(backend_url, key, "GET", WORKSPACES_PATH)
        for item in answer.get("items", []):
            error = f"  last error: {item['last_error']}" if item.get("last_error") else ""
            print(f"{item['slug']:<24} {item['status']:<12} tenant {item['tenant_id']}  "
                  f"{item['repositories']} repositories{error}", file=out)


def cmd_bitbucket(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_run(args, dict(os.environ), sys.stdout))
    except UsageError as exc:
        print(f"prgate bitbucket {args.action}: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"prgate bitbucket {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``prgate bitbucket connect WORKSPACE [--token-file F]`` / ``disconnect WORKSPACE [--purge]`` / ``list``"""
    parser = sub.add_parser("bitbucket", help="connect or disconnect a Bitbucket Cloud workspace")
    actions = parser.add_subparsers(dest="action", required=True)
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend-url", metavar="URL",
                         help=f"the backend (default: BACKEND_URL, {DEFAULT_BACKEND_URL})")
    connect = actions.add_parser("connect", parents=[backend], help="check the token, discover the repositories, "
                                 "register the webhook (again: the token replaced, the webhook updated)")
    connect.add_argument("workspace", metavar="WORKSPACE")
    connect.add_argument("--token-file", metavar="F", help=f"read the access token from F (default: {TOKEN_VARIABLE})")
    disconnect = actions.add_parser("disconnect", parents=[backend],
                                    help="delete the webhook and stop the workspace's work; data kept")
    disconnect.add_argument("workspace", metavar="WORKSPACE")
    disconnect.add_argument("--purge", action="store_true", help="delete the workspace's data too")
    actions.add_parser("list", parents=[backend], help="every workspace prgate knows, and its status")
    parser.set_defaults(func=cmd_bitbucket)
