"""A test client that signs internal requests exactly as the bot does."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from shared_contracts import signing


class SignedClient:
    def __init__(self, client: TestClient[Any, Any], secret: str) -> None:
        self.client = client
        self.secret = secret

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign_with: str | None = None,
        now: float | None = None,
        nonce: str | None = None,
        content_type: str = "application/json",
    ) -> ClientResponse:
        data = raw if raw is not None else json.dumps(body).encode()
        signed = signing.sign(sign_with or self.secret, "POST", path, data, now=now, nonce=nonce)
        return await self.client.post(
            path, data=data, headers={"Content-Type": content_type, **signed, **(headers or {})}
        )

    async def post_json(self, path: str, body: Any, expect: int = 200) -> Any:
        resp = await self.post(path, body)
        payload = await resp.json()
        assert resp.status == expect, (resp.status, payload)
        return payload
