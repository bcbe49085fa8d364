from __future__ import annotations

from tests.support.signed import SignedClient


async def test_openapi_document_describes_every_route(backend: SignedClient) -> None:
    resp = await backend.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert set(paths) >= {
        "/internal/v2/github/events/pull-request",
        "/internal/v2/github/events/installation-sync",
        "/internal/v2/bot-actions/claim",
        "/internal/v2/bot-actions/{action_id}/result",
        "/api/v1/repos/{repo_id}/github-app-status",
    }
    schemas = doc["components"]["schemas"]
    claim = paths["/internal/v2/bot-actions/claim"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ClaimRequest"
    assert schemas["ClaimRequest"]["properties"]["max_actions"]["maximum"] == 100
    assert set(schemas["Outcome"]["enum"]) == {"SUCCEEDED", "RETRYABLE_FAILURE", "FAILED"}
    assert set(schemas["IngestStatus"]["enum"]) == {"ACCEPTED", "DUPLICATE", "IGNORED", "PARKED", "DROPPED"}
    # Every $ref resolves.
    import json

    for ref in {part.split('"')[0] for part in json.dumps(doc).split('"$ref": "')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
