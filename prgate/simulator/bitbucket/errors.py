"""Bitbucket's error JSON: ``{"type": "error", "error": {"message": …, "detail"?: …}}``."""

from __future__ import annotations

from aiohttp import web

from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.types import JsonDict


class ApiError(SimulatorError):
    def __init__(self, status: int, message: str, *, detail: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.detail = detail
        self.headers = headers or {}


def error_response(error: SimulatorError) -> web.Response:
    inner: JsonDict = {"message": error.message}
    detail = error.detail if isinstance(error, ApiError) else None
    if detail:
        inner["detail"] = detail
    headers = error.headers if isinstance(error, ApiError) else {}
    return web.json_response({"type": "error", "error": inner}, status=error.status, headers=headers)


def not_found(what: str = "Resource not found") -> ApiError:
    return ApiError(404, what)
