"""Signature middleware for `/internal/*` (ARCHITECTURE.md §2)."""

from __future__ import annotations

from aiohttp import web

from backend_api.http.errors import Handler, json_error
from backend_api.http.keys import NONCES, SETTINGS
from backend_api.metrics import count_signature_failure
from shared_contracts import signing

INTERNAL_PREFIX = "/internal/"


@web.middleware
async def internal_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(INTERNAL_PREFIX):
        return await handler(request)
    body = await request.read()
    try:
        verified = signing.verify(
            request.app[SETTINGS].internal_secrets, request.headers, request.method, request.raw_path, body
        )
    except signing.SignatureError as exc:
        count_signature_failure(request, str(exc))
        return json_error(401, "unauthorized", str(exc))
    if not await request.app[NONCES].first_use(verified.nonce):
        count_signature_failure(request, "replayed nonce")
        return json_error(401, "unauthorized", "replayed nonce")
    return await handler(request)
