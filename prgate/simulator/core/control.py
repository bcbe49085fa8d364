"""The provider-neutral ``/_sim/`` control routes: reset, faults, and the request log."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from pydantic import ValidationError

from prgate.simulator.core.errors import SimulatorError
from prgate.simulator.core.faults import FaultConfig, FaultInjector, FaultRule
from prgate.simulator.core.http import json_body, query_int
from prgate.simulator.core.records import RequestRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Controlled(Protocol):
    """What a provider's state offers the generic control routes."""

    @property
    def faults(self) -> FaultInjector: ...

    @property
    def request_log(self) -> deque[RequestRecord]: ...

    def reset(self) -> None: ...


SIM_CONTROLLED: web.AppKey[Controlled] = web.AppKey("prgate_sim_controlled")


def controlled(request: web.Request) -> Controlled:
    return request.app[SIM_CONTROLLED]


async def sim_reset(request: web.Request) -> web.Response:
    controlled(request).reset()
    return web.json_response({"ok": True})


async def sim_get_faults(request: web.Request) -> web.Response:
    return web.json_response(controlled(request).faults.config.model_dump(mode="json"))


async def sim_put_faults(request: web.Request) -> web.Response:
    try:
        config = FaultConfig.model_validate(await json_body(request))
    except ValidationError as error:
        raise SimulatorError(422, str(error)) from None
    faults = controlled(request).faults
    faults.configure(config)
    return web.json_response(faults.config.model_dump(mode="json"))


async def sim_add_fault_rule(request: web.Request) -> web.Response:
    try:
        rule = FaultRule.model_validate(await json_body(request))
    except ValidationError as error:
        raise SimulatorError(422, str(error)) from None
    faults = controlled(request).faults
    faults.add_rule(rule)
    return web.json_response(faults.config.model_dump(mode="json"), status=201)


async def sim_clear_faults(request: web.Request) -> web.Response:
    faults = controlled(request).faults
    faults.configure(FaultConfig())
    return web.json_response(faults.config.model_dump(mode="json"))


async def sim_list_requests(request: web.Request) -> web.Response:
    records = list(controlled(request).request_log)
    if "installation_id" in request.query:
        wanted = query_int(request, "installation_id", -1)
        records = [r for r in records if r.installation_id == wanted]
    if "method" in request.query:
        records = [r for r in records if r.method == request.query["method"].upper()]
    if "path_regex" in request.query:
        try:
            pattern = re.compile(request.query["path_regex"])
        except re.error as error:
            raise SimulatorError(422, f"bad path_regex: {error}") from None
        records = [r for r in records if pattern.search(r.path)]
    return web.json_response({"requests": [r.to_json() for r in records]})


async def sim_clear_requests(request: web.Request) -> web.Response:
    controlled(request).request_log.clear()
    return web.json_response({"ok": True})


# Each provider's application adds these beside its own control routes (request.app is that
# provider's application, so a sub-app's faults and log are its own).
CONTROL_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/_sim/reset", sim_reset),
    ("GET", "/_sim/faults", sim_get_faults),
    ("PUT", "/_sim/faults", sim_put_faults),
    ("DELETE", "/_sim/faults", sim_clear_faults),
    ("POST", "/_sim/faults/rules", sim_add_fault_rule),
    ("GET", "/_sim/requests", sim_list_requests),
    ("DELETE", "/_sim/requests", sim_clear_requests),
)
