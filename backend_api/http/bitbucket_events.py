"""Thin handlers of the receiver's Bitbucket events (docs/bitbucket.md, "The gate"): read the wire
model, run the use case, answer. Bitbucket out of reach while its answer is needed (the author's
permission): 503 with Retry-After, nothing written, and the receiver parks the delivery."""

from __future__ import annotations

import logging
import math

from aiohttp import web

from backend_api.facts import ConfigRead, Ingested
from backend_api.gate import bitbucket as gate
from backend_api.gate import bitbucket_config
from backend_api.http.errors import ApiError, json_response, read_model
from backend_api.keys import BITBUCKET_CONFIG, BITBUCKET_PERMISSIONS, CONFIG_READ, DB_POOL, INGESTED, SETTINGS
from backend_api.store.bitbucket import AccountConflict
from provider_clients.bitbucket.errors import RateLimited, Unavailable
from shared_contracts.bitbucket import BitbucketCommandEvent, BitbucketPullRequestEvent, BitbucketPushEvent

log = logging.getLogger(__name__)


def _conflict(delivery_id: str) -> ApiError:
    # Bad input, not our failure: refused whole (nothing was written) and logged; the answer's status is
    # counted with every other by the HTTP metrics.
    log.warning("bitbucket event refused: an account_id paired with another account's UUID",
                extra={"delivery_id": delivery_id})
    return ApiError(422, "account_conflict", "an account_id is paired with a UUID other than its own")


def _unavailable(exc: Unavailable | RateLimited, delivery_id: str) -> ApiError:
    log.warning("bitbucket event not decided, Bitbucket could not be asked: %s", exc,
                extra={"delivery_id": delivery_id})
    retry_after = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after else 30.0
    return ApiError(503, "unavailable", "Bitbucket could not be asked for a permission; send it again",
                    headers={"Retry-After": str(math.ceil(retry_after))})


async def bitbucket_pull_request_event(request: web.Request) -> web.Response:
    event = await read_model(request, BitbucketPullRequestEvent)
    settings = request.app[SETTINGS]
    try:
        answer, enqueued = await gate.ingest_pull_request(
            request.app[DB_POOL], event, permissions=request.app[BITBUCKET_PERMISSIONS],
            public_url=settings.public_url, max_attempts=settings.action_max_attempts,
        )
    except (Unavailable, RateLimited) as exc:
        raise _unavailable(exc, event.delivery_id) from None
    except AccountConflict:
        raise _conflict(event.delivery_id) from None
    request[INGESTED] = Ingested(event.event_key, (answer,), tuple(enqueued))
    return json_response(answer)


async def bitbucket_command_event(request: web.Request) -> web.Response:
    event = await read_model(request, BitbucketCommandEvent)
    settings = request.app[SETTINGS]
    try:
        answer = await gate.ingest_command(
            request.app[DB_POOL], event, permissions=request.app[BITBUCKET_PERMISSIONS],
            public_url=settings.public_url, max_attempts=settings.action_max_attempts,
        )
    except (Unavailable, RateLimited) as exc:
        raise _unavailable(exc, event.delivery_id) from None
    except AccountConflict:
        raise _conflict(event.delivery_id) from None
    request[INGESTED] = Ingested(event.event, (answer,))
    return json_response(answer)


async def bitbucket_push_event(request: web.Request) -> web.Response:
    """A push to a repository's main branch: read `.prgate.yml` again (docs/bitbucket.md, "The config
    file"). Bitbucket out of reach, or the workspace's token unreadable: 503 with Retry-After, nothing
    written, and the receiver parks the push."""
    event = await read_model(request, BitbucketPushEvent)
    try:
        answer, result = await bitbucket_config.ingest_push(
            request.app[DB_POOL], request.app[BITBUCKET_CONFIG], event,
            max_attempts=request.app[SETTINGS].action_max_attempts,
        )
    except bitbucket_config.CANNOT_ASK as exc:
        log.warning("bitbucket config file not read: %s", exc, extra={"delivery_id": event.delivery_id})
        request[CONFIG_READ] = ConfigRead("push", ("unavailable",))
        retry_after = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after else 30.0
        raise ApiError(503, "unavailable", "Bitbucket could not be asked for the config file; send it again",
                       headers={"Retry-After": str(math.ceil(retry_after))}) from None
    if result is not None:
        request[CONFIG_READ] = ConfigRead("push", (result,))
    request[INGESTED] = Ingested(event.event, (answer,))
    return json_response(answer)
