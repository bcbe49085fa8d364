"""`next_page`: a `Link: rel="next"` is followed only on GITHUB_API_URL's origin (providers/github/paging.py)."""

from __future__ import annotations

import pytest

from bot_worker.providers.github.paging import next_page

API = "https://api.github.com"


def link(url: str) -> str:
    return f'<{url}>; rel="next", <https://api.github.com/x?page=9>; rel="last"'


def test_same_origin_is_followed_and_no_next_is_the_end() -> None:
    assert next_page(link("https://api.github.com/app/installations?page=2"), API).url == \
        "https://api.github.com/app/installations?page=2"
    assert next_page(link("https://API.github.com:443/x?page=2"), API).url is not None  # default port, case
    assert next_page(link("/x?page=2"), "http://127.0.0.1:8000").url == "http://127.0.0.1:8000/x?page=2"
    assert next_page('<https://api.github.com/x?page=1>; rel="prev"', API) == next_page(None, API)
    assert next_page(None, API).refused is None


@pytest.mark.parametrize("url", [
    "https://evil.example/app/installations?page=2",
    "http://api.github.com/x?page=2",  # scheme
    "https://api.github.com:8443/x?page=2",  # port
    "https://api.github.com.evil.example/x",
    "https://api.github.com@evil.example/x",
    "//evil.example/x",
])
def test_any_other_origin_is_refused(url: str) -> None:
    following = next_page(link(url), API)
    assert following.url is None
    assert following.refused is not None
