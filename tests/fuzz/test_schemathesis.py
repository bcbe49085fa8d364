"""schemathesis against the backend's own /openapi.json (the document served by the running app).

The backend runs in a thread of its own (its own event loop, a real port, the real test
database); schemathesis drives it with `requests`. `/internal/*` requests are signed by a
`requests` auth hook that adds the X-Prgate-* headers over the exact bytes sent. Every
operation must answer no 5xx, only documented status codes, and bodies matching the schema.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend_api.app import create_app
from backend_api.http.routes import openapi_document
from shared_contracts import signing
from tests.conftest import INTERNAL_SECRET, backend_settings
from tests.fuzz.schemas import examples
from tests.support.processes import free_port

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


class PrgateSignature(requests.auth.AuthBase):
    """Sign /internal/* requests exactly as the bot does (shared_contracts.signing)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(request.url or "")
        if parts.path.startswith("/internal/"):
            path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
            body = request.body or b""
            data = body.encode() if isinstance(body, str) else bytes(body)
            request.headers.update(signing.sign(INTERNAL_SECRET, request.method or "POST", path_qs, data))
        return request


@pytest.fixture(scope="module")
def backend_base_url(database_url: str) -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(backend_settings(database_url)))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_served_document_is_the_generated_one(backend_base_url: str) -> None:
    served = requests.get(f"{backend_base_url}/openapi.json", timeout=10).json()
    assert served == openapi_document()


schema = schemathesis.openapi.from_dict(openapi_document())
# KNOWN ISSUE (see docs/fuzzing.md): with schemathesis 4.22.4 + hypothesis 6.119.4, pytest *collection*
# of the parametrized test below spins at 100% CPU for > 60 s. Opt in until that is understood.
ENABLED = os.environ.get("PRGATE_SCHEMATHESIS") == "1"


@pytest.mark.skipif(not ENABLED, reason="set PRGATE_SCHEMATHESIS=1 (collection is slow, see docs/fuzzing.md)")
def test_schemathesis_disabled_marker() -> None:
    """Placeholder so a default run shows that the schemathesis run was skipped."""


def _test_api_conforms(case: Any, backend_base_url: str) -> None:
    response = case.call(base_url=backend_base_url, auth=PrgateSignature(), timeout=10)
    case.validate_response(response, checks=CHECKS)


if ENABLED:
    test_api_conforms = settings(
        max_examples=examples(15), deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.filter_too_much],
    )(schema.parametrize()(_test_api_conforms))
