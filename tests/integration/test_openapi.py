"""The OpenAPI documents: `/openapi.json` is the public API only; the signed `/internal/*` contract is a
document of its own, never served publicly; `/api/docs` renders the public one for people."""

from __future__ import annotations

import json
from typing import Any

from backend_api.http.routes import ROUTES, openapi_document
from tests.support.signed import SignedClient


def _refs_resolve(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for ref in {part.split('"')[0] for part in json.dumps(doc).split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


async def test_public_document_has_no_internal_route(backend: SignedClient) -> None:
    resp = await backend.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc == openapi_document("public")
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert not [p for p in paths if p.startswith("/internal/")]
    assert set(paths) >= {"/api/v1/repos/{repo_id}/github-app-status", "/api/v1/repos/{repo_id}/settings",
                          "/api/v1/session", "/healthz", "/readyz"}
    public = {(r.method.lower(), r.path) for r in ROUTES if not r.path.startswith("/internal/")}
    assert {(m, p) for p, ops in paths.items() for m in ops} == public
    assert "securitySchemes" not in doc["components"]  # nothing public is signed
    assert "ClaimRequest" not in doc["components"]["schemas"]  # internal models stay out too
    _refs_resolve(doc)


def test_internal_document_describes_the_signed_contract() -> None:
    doc = openapi_document("internal")
    paths = doc["paths"]
    assert set(paths) >= {
        "/internal/v2/github/events/pull-request",
        "/internal/v2/github/events/installation-sync",
        "/internal/v2/bot-actions/claim",
        "/internal/v2/bot-actions/{action_id}/result",
    }
    assert all(p.startswith("/internal/") for p in paths)
    schemas = doc["components"]["schemas"]
    claim = paths["/internal/v2/bot-actions/claim"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ClaimRequest"
    assert claim["security"] == [{"prgateSignature": []}]
    assert schemas["ClaimRequest"]["properties"]["max_actions"]["maximum"] == 100
    assert set(schemas["Outcome"]["enum"]) == {"SUCCEEDED", "RETRYABLE_FAILURE", "FAILED"}
    assert set(schemas["IngestStatus"]["enum"]) == {"ACCEPTED", "DUPLICATE", "IGNORED", "PARKED", "DROPPED"}
    _refs_resolve(doc)


async def test_internal_document_is_not_served(backend: SignedClient) -> None:
    for path in ("/internal/openapi.json", "/openapi.json?audience=internal"):
        resp = await backend.client.get(path)
        body = await resp.text()
        assert "/internal/v2/bot-actions/claim" not in body, path


async def test_api_docs_render_every_public_operation(backend: SignedClient) -> None:
    resp = await backend.client.get("/api/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # no script allowed, none needed
    page = await resp.text()
    doc = openapi_document("public")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert f'id="op-{op["operationId"]}"' in page, (method, path)
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page, name
    for loads in ("<script", "<link", " src=", "@import"):  # works offline: nothing fetched, nothing run
        assert loads not in page, loads
    assert "/internal/" not in page
