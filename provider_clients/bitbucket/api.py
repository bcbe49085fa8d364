"""The one Bitbucket Cloud REST 2.0 client both services use (docs/bitbucket.md).

The backend connects a workspace, checks permissions and reads `.prgate.yml` with it; the worker
comments, declines and sets statuses. The caller owns the aiohttp session and the token (a
workspace access token, or a user's OAuth token for `current_user`).

- No retries here: a `RateLimited` or `Unavailable` goes back to the caller, whose outbox or job
  already knows how to retry with backoff; retrying twice would multiply Bitbucket's hourly budget.
- `paginate` follows `next` only on `api_url`'s origin, so the token is never sent to a host a
  response named; a page count past `max_pages` raises rather than silently truncating a listing.
- Every HTTP attempt is counted on the caller's `RequestCounter` (requests per item is a metric
  the services export).
- Messages name the method and path, never the query string or the token.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from provider_clients.bitbucket.errors import (
    AuthFailed,
    BadRequest,
    BitbucketError,
    NotFound,
    RateLimited,
    Unavailable,
)
from provider_clients.bitbucket.models import (
    Account,
    BuildState,
    BuildStatus,
    Comment,
    Hook,
    OAuthToken,
    PermissionLevel,
    PullRequest,
    Repository,
    Workspace,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL: Final = "https://api.bitbucket.org"
DEFAULT_WEB_URL: Final = "https://bitbucket.org"
DEFAULT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_MAX_PAGES: Final = 100
PAGELEN: Final = 100  # Bitbucket's maximum page size for most collections
PERMISSION_LEVELS: Final[tuple[PermissionLevel, ...]] = ("read", "write", "admin")

# The webhook events prgate subscribes a workspace hook to (docs/bitbucket.md "Webhooks in"): every
# event the gate reads, and the status events a merge check's state follows.
HOOK_EVENTS: Final = (
    "pullrequest:created",
    "pullrequest:updated",
    "pullrequest:fulfilled",
    "pullrequest:rejected",
    "pullrequest:comment_created",
    "repo:push",
    "repo:commit_status_created",
    "repo:commit_status_updated",
)

Params = Mapping[str, str | int]
M = TypeVar("M", bound=BaseModel)


@dataclass
class RequestCounter:
    """HTTP attempts per call name; the caller passes one per item to measure requests per item."""

    total: int = 0
    by_call: Counter[str] = field(default_factory=Counter)

    def add(self, call: str) -> None:
        self.total += 1
        self.by_call[call] += 1


def _segment(value: str | int) -> str:
    """One path segment, escaped whole (braced UUIDs as `%7B…%7D`, as Bitbucket's own links write them)."""
    return quote(str(value), safe="")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _message(body: Any) -> str:
    """Bitbucket's `{"type": "error", "error": {"message": …}}`, or a short fallback."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return "no error message"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _raise_for(status: int, body: Any, headers: Mapping[str, str], method: str, path: str) -> None:
    if status < 400:
        return
    message = _message(body)
    if status == 429:
        raise RateLimited(message, retry_after=_retry_after(headers), method=method, path=path)
    if status >= 500:
        raise Unavailable(message, status=status, method=method, path=path)
    if status in (401, 403):
        raise AuthFailed(message, status=status, method=method, path=path)
    if status == 404:
        raise NotFound(message, status=status, method=method, path=path)
    raise BadRequest(message, status=status, method=method, path=path)


def _parse(model: type[M], body: Any, method: str, path: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(f"unexpected answer shape: {exc.error_count()} field error(s)",
                         method=method, path=path) from None


class BitbucketClient:
    """Bitbucket REST 2.0 calls authorized by one Bearer token."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, token: str, *,
                 counter: RequestCounter | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._token = token
        self.counter = counter if counter is not None else RequestCounter()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_pages = max_pages

    def __repr__(self) -> str:  # never the token
        return f"BitbucketClient({self._api_url!r})"

    # --- the generic verbs -------------------------------------------------------------------

    async def _send(self, method: str, url: str, *, params: Params | None = None, json: Any = None,
                    token: str | None = None, call: str, text: bool = False) -> tuple[int, Any]:
        """One HTTP attempt → (status, body); raises the hierarchy's error for non-2xx."""
        path = urlsplit(url).path
        headers = {"Authorization": f"Bearer {token or self._token}", "Accept": "application/json",
                   "User-Agent": "prgate"}
        self.counter.add(call)
        try:
            async with self._session.request(method, url, params=params, json=json, headers=headers,
                                             timeout=self._timeout, allow_redirects=False) as resp:
                raw = await resp.text()
                status = resp.status
                resp_headers = resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unavailable(f"{type(exc).__name__}", method=method, path=path) from None
        body: Any = raw
        if not text or status >= 400:
            body = _json_or_text(raw)
        _raise_for(status, body, resp_headers, method, path)
        return status, body

    def url(self, path: str) -> str:
        return self._api_url + (path if path.startswith("/") else "/" + path)

    async def get(self, path: str, params: Params | None = None, *, call: str = "get") -> Any:
        return (await self._send("GET", self.url(path), params=params, call=call))[1]

    async def post(self, path: str, json: Any = None, *, call: str = "post") -> Any:
        return (await self._send("POST", self.url(path), json=json if json is not None else {}, call=call))[1]

    async def put(self, path: str, json: Any = None, *, call: str = "put") -> Any:
        return (await self._send("PUT", self.url(path), json=json if json is not None else {}, call=call))[1]

    async def delete(self, path: str, *, call: str = "delete") -> None:
        await self._send("DELETE", self.url(path), call=call)

    async def paginate(self, path: str, params: Params | None = None, *,
                       call: str = "paginate") -> AsyncIterator[Any]:
        """Every item of `values` on every page, following `next` on the API's origin only."""
        origin = _origin(self._api_url)
        url: str | None = self.url(path)
        query: Params | None = {"pagelen": PAGELEN, **(params or {})}
        pages = 0
        while url is not None:
            pages += 1
            if pages > self._max_pages:
                raise BadRequest(f"more than {self._max_pages} pages", method="GET", path=urlsplit(self.url(path)).path)
            _, body = await self._send("GET", url, params=query, call=call)
            if not isinstance(body, dict) or not isinstance(body.get("values"), list):
                raise BadRequest("a page without `values`", method="GET", path=urlsplit(url).path)
            for item in body["values"]:
                yield item
            nxt = body.get("next")
            if nxt is None:
                return
            if not isinstance(nxt, str) or _origin(nxt) != origin:
                # Following it would send our token to whatever host the answer named.
                log.warning("bitbucket: refused a `next` link off the API origin on %s", urlsplit(url).path)
                raise BadRequest("`next` link is not on the API's origin", method="GET", path=urlsplit(url).path)
            url, query = nxt, None  # `next` carries its own query

    # --- workspaces and repositories ---------------------------------------------------------

    async def workspace(self, ws: str) -> Workspace:
        path = f"/2.0/workspaces/{_segment(ws)}"
        return _parse(Workspace, await self.get(path, call="workspace"), "GET", path)

    async def repositories(self, ws: str, *, role: str | None = None) -> AsyncIterator[Repository]:
        """Every repository of the workspace; with a user's token and ``role`` (member, contributor,
        admin) only those where the user holds at least that role."""
        path = f"/2.0/repositories/{_segment(ws)}"
        async for item in self.paginate(path, {"role": role} if role else None, call="repositories"):
            yield _parse(Repository, item, "GET", path)

    async def repository(self, ws: str, slug: str) -> Repository:
        path = f"/2.0/repositories/{_segment(ws)}/{_segment(slug)}"
        return _parse(Repository, await self.get(path, call="repository"), "GET", path)

    # --- hooks -------------------------------------------------------------------------------

    async def list_hooks(self, ws: str) -> list[Hook]:
        path = f"/2.0/workspaces/{_segment(ws)}/hooks"
        return [_parse(Hook, item, "GET", path) async for item in self.paginate(path, call="list_hooks")]

    async def create_hook(self, ws: str, *, url: str, secret: str, events: tuple[str, ...] = HOOK_EVENTS,
                          description: str = "prgate", active: bool = True) -> Hook:
        path = f"/2.0/workspaces/{_segment(ws)}/hooks"
        body = {"description": description, "url": url, "active": active, "secret": secret,
                "events": list(events)}
        return _parse(Hook, await self.post(path, body, call="create_hook"), "POST", path)

    async def update_hook(self, ws: str, uid: str, *, url: str, secret: str,
                          events: tuple[str, ...] = HOOK_EVENTS, description: str = "prgate",
                          active: bool = True) -> Hook:
        path = f"/2.0/workspaces/{_segment(ws)}/hooks/{_segment(uid)}"
        body = {"description": description, "url": url, "active": active, "secret": secret,
                "events": list(events)}
        return _parse(Hook, await self.put(path, body, call="update_hook"), "PUT", path)

    async def delete_hook(self, ws: str, uid: str) -> None:
        await self.delete(f"/2.0/workspaces/{_segment(ws)}/hooks/{_segment(uid)}", call="delete_hook")

    # --- pull requests -----------------------------------------------------------------------

    def _pr_path(self, ws: str, slug: str, pr_id: int) -> str:
        return f"/2.0/repositories/{_segment(ws)}/{_segment(slug)}/pullrequests/{int(pr_id)}"

    async def pull_request(self, ws: str, slug: str, pr_id: int) -> PullRequest:
        path = self._pr_path(ws, slug, pr_id)
        return _parse(PullRequest, await self.get(path, call="pull_request"), "GET", path)

    async def list_comments(self, ws: str, slug: str, pr_id: int) -> AsyncIterator[Comment]:
        path = self._pr_path(ws, slug, pr_id) + "/comments"
        async for item in self.paginate(path, call="list_comments"):
            yield _parse(Comment, item, "GET", path)

    async def create_comment(self, ws: str, slug: str, pr_id: int, raw: str) -> Comment:
        path = self._pr_path(ws, slug, pr_id) + "/comments"
        body = await self.post(path, {"content": {"raw": raw}}, call="create_comment")
        return _parse(Comment, body, "POST", path)

    async def update_comment(self, ws: str, slug: str, pr_id: int, comment_id: int, raw: str) -> Comment:
        path = self._pr_path(ws, slug, pr_id) + f"/comments/{int(comment_id)}"
        body = await self.put(path, {"content": {"raw": raw}}, call="update_comment")
        return _parse(Comment, body, "PUT", path)

    async def decline(self, ws: str, slug: str, pr_id: int) -> PullRequest:
        """Decline; a PR that is already declined is success (its current state is returned).

        Bitbucket answers 400 for a PR that is not open; rather than match its wording, a 400/409
        is followed by one read, and only a PR that is really DECLINED counts as done.
        """
        path = self._pr_path(ws, slug, pr_id) + "/decline"
        try:
            return _parse(PullRequest, await self.post(path, {}, call="decline"), "POST", path)
        except BadRequest as exc:
            if exc.status not in (400, 409):
                raise
            current = await self.pull_request(ws, slug, pr_id)
            if current.state == "DECLINED":
                log.info("bitbucket: %s/%s#%d was already declined", ws, slug, pr_id)
                return current
            raise

    async def set_build_status(self, ws: str, slug: str, commit: str, *, key: str, state: BuildState,
                               url: str, name: str | None = None,
                               description: str | None = None) -> BuildStatus:
        path = f"/2.0/repositories/{_segment(ws)}/{_segment(slug)}/commit/{_segment(commit)}/statuses/build"
        body: dict[str, str] = {"key": key, "state": state, "url": url}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        return _parse(BuildStatus, await self.post(path, body, call="set_build_status"), "POST", path)

    # --- permissions, files, users -----------------------------------------------------------

    async def permission(self, ws: str, slug: str, account_id: str) -> PermissionLevel | None:
        """The account's effective permission on the repository, None when it has none.

        `GET /2.0/workspaces/{ws}/permissions/repositories/{slug}` is the workspace-scoped endpoint
        Atlassian points to after CHANGE-2770 removed the user-scoped ones; it needs a token with
        admin on the repository.
        """
        path = f"/2.0/workspaces/{_segment(ws)}/permissions/repositories/{_segment(slug)}"
        escaped = account_id.replace("\\", "\\\\").replace('"', '\\"')
        async for item in self.paginate(path, {"q": f'user.account_id="{escaped}"'}, call="permission"):
            if isinstance(item, dict):
                user = item.get("user")
                if isinstance(user, dict) and user.get("account_id") == account_id:
                    level = item.get("permission")
                    for known in PERMISSION_LEVELS:
                        if level == known:
                            return known
                    raise BadRequest(f"unknown permission {level!r}", method="GET", path=path)
        return None

    async def file(self, ws: str, slug: str, ref: str, file_path: str) -> str | None:
        """A file's raw text at a commit or branch; None when the file (or the ref) is absent."""
        path = (f"/2.0/repositories/{_segment(ws)}/{_segment(slug)}/src/{_segment(ref)}/"
                + quote(file_path.lstrip("/"), safe="/"))
        try:
            _, body = await self._send("GET", self.url(path), call="file", text=True)
        except NotFound:
            return None
        return str(body)

    async def current_user(self, user_token: str | None = None) -> Account:
        """`GET /2.0/user` as the user whose OAuth token this is (the client's own by default)."""
        path = "/2.0/user"
        _, body = await self._send("GET", self.url(path), token=user_token, call="current_user")
        return _parse(Account, body, "GET", path)


def _json_or_text(raw: str) -> Any:
    if not raw:
        return None
    try:
        return jsonlib.loads(raw)
    except ValueError:
        return raw


def authorize_url(web_url: str, client_id: str, state: str, redirect_uri: str | None = None) -> str:
    """Where to send a user's browser to sign in with Bitbucket (OAuth 2.0 authorization code)."""
    query = {"client_id": client_id, "response_type": "code", "state": state}
    if redirect_uri:
        query["redirect_uri"] = redirect_uri
    return f"{web_url.rstrip('/')}/site/oauth2/authorize?{urlencode(query)}"


async def oauth_exchange(session: aiohttp.ClientSession, web_url: str, *, client_id: str,
                         client_secret: str, code: str, redirect_uri: str | None = None,
                         counter: RequestCounter | None = None,
                         timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> OAuthToken:
    """Trade an authorization code for the user's token (client id/secret in Basic auth)."""
    path = "/site/oauth2/access_token"
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri:
        data["redirect_uri"] = redirect_uri
    if counter is not None:
        counter.add("oauth_exchange")
    try:
        async with session.post(web_url.rstrip("/") + path, data=data,
                                headers={"Authorization": aiohttp.encode_basic_auth(client_id, client_secret),
                                         "Accept": "application/json", "User-Agent": "prgate"},
                                timeout=aiohttp.ClientTimeout(total=timeout_seconds),
                                allow_redirects=False) as resp:
            raw = await resp.text()
            status, headers = resp.status, resp.headers
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Unavailable(type(exc).__name__, method="POST", path=path) from None
    body = _json_or_text(raw)
    if status >= 400 and isinstance(body, dict) and isinstance(body.get("error_description"), str):
        # OAuth errors are RFC 6749's shape, not the REST API's.
        body = {"error": {"message": f"{body.get('error')}: {body['error_description']}"}}
    _raise_for(status, body, headers, "POST", path)
    return _parse(OAuthToken, body, "POST", path)


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_WEB_URL",
    "HOOK_EVENTS",
    "AuthFailed",
    "BadRequest",
    "BitbucketClient",
    "BitbucketError",
    "NotFound",
    "RateLimited",
    "RequestCounter",
    "Unavailable",
    "authorize_url",
    "oauth_exchange",
]
