"""The one exception hierarchy of Bitbucket REST calls.

Every error names the call (method and path, never the query or a token) and Bitbucket's own
message, so a log line or an action's failure reason says what went wrong without leaking the
credential. Callers map them to their own outcomes: `RateLimited` and `Unavailable` are retryable,
`AuthFailed`, `NotFound` and `BadRequest` are not.
"""

from __future__ import annotations


class BitbucketError(Exception):
    """A Bitbucket call that did not give the answer the caller needs."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = "") -> None:
        self.status = status
        self.method = method
        self.path = path
        self.reason = message
        where = f"{method} {path}".strip()
        code = f" {status}" if status is not None else ""
        super().__init__(f"bitbucket{code}: {where}: {message}" if where else f"bitbucket{code}: {message}")


class RateLimited(BitbucketError):
    """429: the credential's hourly budget is spent; `retry_after` seconds when Bitbucket said."""

    def __init__(self, message: str, *, retry_after: float | None, status: int | None = 429,
                 method: str = "", path: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, method=method, path=path)


class Unavailable(BitbucketError):
    """5xx, a timeout or a broken connection: worth retrying later."""


class AuthFailed(BitbucketError):
    """401 or 403: the token is unknown, expired, or not allowed this resource."""


class NotFound(BitbucketError):
    """404 (Bitbucket also answers 404 for another workspace's private resource)."""


class BadRequest(BitbucketError):
    """Any other 4xx, or a 2xx whose body is not the shape the call expects."""
