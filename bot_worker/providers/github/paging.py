"""Following GitHub's `Link: <...>; rel="next"` without sending a token anywhere else (docs/security.md, "`Link: next`
URLs followed with the token, on any origin").

Every page request carries the App JWT or an installation token, so a `next` URL is followed only on
the configured API's origin (scheme, host and port of GITHUB_API_URL). Any other origin stops the
listing; the caller logs and counts it and treats the listing as incomplete. gidgethub's `getiter`
(the comment search) follows `next` by itself, so the bot's gidgethub requester refuses every request
off that origin (`check_origin`) before sending it.

gidgethub's own `Link` parser (`sansio._next_link`) is private, and `getiter` cannot stop at the
reconcile job's rate-limit reserve between pages, so the raw readers keep `next_page`.
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL


@dataclass(frozen=True, slots=True)
class NextPage:
    url: str | None  # the next page to fetch; None: the last page, or a refused link
    refused: str | None = None  # the foreign origin a `next` link pointed to


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a `Link` header, as written (unchecked: see `next_page`)."""
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None


def origin(url: URL) -> tuple[str, str, int | None]:
    return url.scheme.lower(), (url.host or "").lower(), url.port  # yarl fills in the default port


class ForeignOrigin(Exception):
    """A request (a `next` page gidgethub's `getiter` would follow) was off GITHUB_API_URL's origin:
    refused before anything, the token least of all, was sent."""

    def __init__(self, refused: str) -> None:
        super().__init__(f"not sending a request to {refused}: it is not GITHUB_API_URL's origin")
        self.refused = refused


def check_origin(url: str, api_url: str) -> None:
    """ForeignOrigin unless the absolute `url` is on `api_url`'s origin."""
    try:
        target = URL(url)
    except ValueError:
        raise ForeignOrigin(url[:200]) from None
    if not target.is_absolute() or origin(target) != origin(URL(api_url)):
        raise ForeignOrigin(f"{target.scheme}://{target.host}:{target.port}")


def next_page(header: str | None, api_url: str) -> NextPage:
    """The `next` URL of `header` if it is on `api_url`'s origin (a relative one is resolved against it)."""
    raw = next_link(header)
    if raw is None:
        return NextPage(None)
    api = URL(api_url)
    try:
        target = api.join(URL(raw))
    except ValueError:
        return NextPage(None, refused=raw[:200])
    if not target.is_absolute() or origin(target) != origin(api):
        return NextPage(None, refused=f"{target.scheme}://{target.host}:{target.port}")
    return NextPage(str(target))
