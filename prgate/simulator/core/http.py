"""Request helpers every provider's handlers and the control routes share."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.types import JsonDict


def query_int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


async def json_body(request: web.Request) -> JsonDict:
    """A control request's JSON object body (empty: ``{}``); anything else is a 400."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise SimulatorError(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise SimulatorError(400, "Problems parsing JSON")
    return data


def need(body: JsonDict, key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SimulatorError(422, f"{key!r} is required and must be {kind.__name__}")
    return value
