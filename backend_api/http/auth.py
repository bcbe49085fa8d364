"""Signature and scope middleware for `/internal/*` (docs/contract.md "Internal signing", docs/security.md)."""

from __future__ import annotations

from aiohttp import web

from backend_api.http.errors import Handler, json_error
from backend_api.keys import NONCES, SCOPES, SETTINGS
from backend_api.metrics import count_signature_failure
from shared_contracts import signing

INTERNAL_PREFIX = "/internal/"


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


def _route_template(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


@web.middleware
async def internal_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(INTERNAL_PREFIX):
        return await handler(request)
    settings = request.app[SETTINGS]
    # With a separate internal listener the public port does not know /internal at all.
    if settings.internal_port and _local_port(request) != settings.internal_port:
        return json_error(404, "not_found", "no such route")
    body = await request.read()
    try:
        verified, caller = signing.verify_keyring(
            settings.keyring(), request.headers, request.method, request.raw_path, body
        )
    except signing.SignatureError as exc:
        count_signature_failure(request, str(exc))
        return json_error(401, "unauthorized", str(exc))
    if not await request.app[NONCES].first_use(verified.nonce):
        count_signature_failure(request, "replayed nonce")
        return json_error(401, "unauthorized", "replayed nonce")
    if not request.app[SCOPES].allows(request.method, _route_template(request), caller):
        count_signature_failure(request, "key out of scope")
        return json_error(403, "forbidden", f"the {caller.value}'s key may not call this route")
    return await handler(request)
