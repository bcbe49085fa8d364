"""What every backend call to GitHub shares: the REST headers and the one "GitHub failed" error."""

from __future__ import annotations

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "prgate"}


class GitHubUnavailable(Exception):
    """GitHub could not be reached, failed, or answered something unexpected (pages: 502; owner API: 503)."""
