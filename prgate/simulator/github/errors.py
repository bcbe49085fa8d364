"""GitHub's error JSON: ``{message, errors?, documentation_url, status}``."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.types import JsonDict

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = RATE_LIMIT_DOCS + "#about-secondary-rate-limits"


class ApiError(SimulatorError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[JsonDict] | None = None,
        documentation_url: str = DOCS,
    ) -> None:
        super().__init__(status, message, errors)
        self.headers = headers or {}
        self.documentation_url = documentation_url


def error_response(error: SimulatorError) -> web.Response:
    body: JsonDict = {"message": error.message}
    if error.errors:
        body["errors"] = error.errors
    body["documentation_url"] = error.documentation_url if isinstance(error, ApiError) else DOCS
    body["status"] = str(error.status)
    headers = error.headers if isinstance(error, ApiError) else {}
    return web.json_response(body, status=error.status, headers=headers)


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
