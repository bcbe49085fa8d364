"""What every backend call to GitHub shares: the REST headers and the one "GitHub failed" error."""

from __future__ import annotations

from provider_clients.github.app import API_HEADERS, api_headers

__all__ = ["API_HEADERS", "GitHubUnavailable", "api_headers"]


class GitHubUnavailable(Exception):
    """GitHub could not be reached, failed, or answered something unexpected (pages: 502; owner API: 503)."""
