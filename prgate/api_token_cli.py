"""``prgate api-token create|list|revoke``: API tokens for the read APIs (docs/api-tokens.md).

The CLI asks the backend, which owns the table, through the signed admin routes
(``/internal/v2/api-tokens``, the first ``PRGATE_ADMIN_SECRETS`` key signs; in a checkout where
``prgate up`` runs, ``.data/env`` gives the URL and the key). ``create`` prints the token once, on
its own last line, so ``TOKEN=$(prgate api-token create … | tail -1)`` works; nothing else ever
shows it again. Exit status: 0 done, 1 the backend refused (unknown tenant, name taken, no such
token), 2 the CLI could not ask (no admin key, backend unreachable or refusing the key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Annotated, Any, TextIO

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared_contracts.api_tokens import ApiTokenCreated, ApiTokenInfo, ApiTokenList, ApiTokenRevoked, TokenScope
from shared_contracts.common import comma_list

TOKENS_PATH = "/internal/v2/api-tokens"
REVOKE_PATH = "/internal/v2/api-tokens/revoke"
REQUEST_TIMEOUT_SECONDS = 10.0


class TokenCliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    backend_url: str = Field(default="http://127.0.0.1:8080", alias="BACKEND_URL")
    admin_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="PRGATE_ADMIN_SECRETS")

    _split = field_validator("admin_secrets", mode="before")(comma_list)


class CliError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _call(settings: TokenCliSettings, method: str, path: str, payload: dict[str, Any] | None) -> Any:
    import aiohttp

    from shared_contracts import signing

    if not settings.admin_secrets:
        raise CliError("PRGATE_ADMIN_SECRETS is not set: the CLI signs its requests to the backend with it", 2)
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = signing.sign(settings.admin_secrets[0], method, path, body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    url = settings.backend_url.rstrip("/") + path
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
            method, url, data=body if payload is not None else None, headers=headers
        ) as resp:
            status, text = resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"the backend at {settings.backend_url} is not answering: {type(exc).__name__}", 2) from None
    if status in (401, 403):
        raise CliError(f"the backend refused our signature ({status}): PRGATE_ADMIN_SECRETS must hold one of "
                       "the backend's admin keys", 2)
    if status != 200:
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text[:300]
        raise CliError(f"the backend answered {status}: {message}", 1)
    return json.loads(text)


def scope_text(token: ApiTokenInfo) -> str:
    match token.scope:
        case TokenScope.OPERATOR:
            return "operator"
        case TokenScope.INSTALLATION:
            return f"installation {token.installation_id}"
        case TokenScope.WORKSPACE:
            return f"workspace {token.workspace or token.workspace_id}"
        case TokenScope.JIRA_SITE:
            return f"jira-site {token.jira_site}"
    return token.scope.value


def _when(value: object) -> str:
    return "-" if value is None else str(value).replace("+00:00", "Z")


def format_list(tokens: list[ApiTokenInfo]) -> str:
    if not tokens:
        return "no API tokens"
    rows = [("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED")] + [
        (str(t.token_id), t.name, scope_text(t), _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


async def _create(settings: TokenCliSettings, args: argparse.Namespace, out: TextIO) -> int:
    payload: dict[str, Any] = {"name": args.name}
    if args.operator:
        payload["scope"] = TokenScope.OPERATOR.value
    elif args.workspace is not None:
        payload |= {"scope": TokenScope.WORKSPACE.value, "workspace": args.workspace}
    elif args.jira_site is not None:
        payload |= {"scope": TokenScope.JIRA_SITE.value, "jira_site": args.jira_site}
    else:
        payload |= {"scope": TokenScope.INSTALLATION.value, "installation_id": args.installation}
    created = ApiTokenCreated.model_validate(await _call(settings, "POST", TOKENS_PATH, payload))
    print(f"API token {created.token_id} {created.name!r} created, scope {scope_text(created)}.", file=out)
    print("It is shown once, now (prgate keeps only its hash); send it as 'Authorization: Bearer <token>':",
          file=out)
    print(created.token, file=out)
    return 0


async def _list(settings: TokenCliSettings, out: TextIO) -> int:
    listed = ApiTokenList.model_validate(await _call(settings, "GET", TOKENS_PATH, None))
    print(format_list(listed.items), file=out)
    return 0


async def _revoke(settings: TokenCliSettings, args: argparse.Namespace, out: TextIO) -> int:
    revoked = ApiTokenRevoked.model_validate(
        await _call(settings, "POST", REVOKE_PATH, {"name_or_id": args.name_or_id})
    )
    token = revoked.token
    state = "was already revoked" if revoked.already_revoked else "revoked: it is refused (401) from now on"
    print(f"API token {token.token_id} {token.name!r} ({scope_text(token)}) {state}", file=out)
    return 0


def cmd_api_token(args: argparse.Namespace) -> int:
    settings = TokenCliSettings()
    command: str = args.api_token_command
    try:
        if command == "create":
            return asyncio.run(_create(settings, args, sys.stdout))
        if command == "list":
            return asyncio.run(_list(settings, sys.stdout))
        return asyncio.run(_revoke(settings, args, sys.stdout))
    except CliError as exc:
        print(f"prgate api-token {command}: {exc}", file=sys.stderr)
        return exc.status


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``prgate api-token create|list|revoke``"""
    group = sub.add_parser("api-token", help="API tokens for the read APIs (create, list, revoke)")
    actions = group.add_subparsers(dest="api_token_command", required=True)
    create = actions.add_parser("create", help="create a token; it is printed once, on the last line")
    create.add_argument("--name", required=True, help="a name to list and revoke it by")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--operator", action="store_true", help="reads every tenant")
    target.add_argument("--workspace", metavar="W", help="reads one connected Bitbucket workspace (its slug)")
    target.add_argument("--jira-site", metavar="URL", help="reads one Jira site (https://x.atlassian.net)")
    target.add_argument("--installation", type=int, metavar="ID", help="reads one GitHub installation")
    create.set_defaults(func=cmd_api_token)
    actions.add_parser("list", help="every token: name, scope, created, last used (never the token)").set_defaults(
        func=cmd_api_token
    )
    revoke = actions.add_parser("revoke", help="revoke a live token by name, or any token by id")
    revoke.add_argument("name_or_id", metavar="NAME_OR_ID")
    revoke.set_defaults(func=cmd_api_token)
