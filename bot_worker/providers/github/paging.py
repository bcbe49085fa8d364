"""Following GitHub's `Link: <...>; rel="next"` without sending a token anywhere else (issue 13, item 14).

Every page request carries the App JWT or an installation token, so a `next` URL is followed only on
the configured API's origin (scheme, host and port of GITHUB_API_URL). Any other origin stops the
listing; the caller logs and counts it and treats the listing as incomplete.
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
