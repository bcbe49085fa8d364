"""How both services' HTTP edges read a request body against a slow sender (aiohttp).

The backend (`backend_api/http/errors.py`) and the receiver (`bot_worker/webhooks/app.py`) refuse a
client that stalls mid-body the same way: they read it under a deadline judged by bytes received,
then answer and close without reading the rest. Kept beside `signing.py`: like the signature, it is
how each side treats the other's requests, and it imports nothing from either service.
"""

from __future__ import annotations

import asyncio

from aiohttp import ClientPayloadError, web


async def body_deadline_passed(request: web.Request, seconds: float) -> bool:
    """Read the whole body (later reads are free); True when the client stalled.

    Stalled = no byte arrived for `seconds`, or the body took over ten times `seconds` in all (a trickle).
    Progress is judged by the bytes received, not by the clock alone: an event loop starved for a
    while (a burst of requests) must not turn bodies that did arrive into 408s.
    """
    if not request.body_exists:
        return False
    if request.content.is_eof():  # the whole body is here already (the common case): no task, no timer
        await request.read()  # 413 and friends propagate from here
        return False
    reading = asyncio.ensure_future(request.read())
    received, waited = -1, 0.0
    while True:
        done, _ = await asyncio.wait({reading}, timeout=seconds)
        if done:
            reading.result()  # 413 and friends propagate from here
            return False
        waited += seconds
        if request.content.total_bytes == received or waited >= 10 * seconds:
            reading.cancel()
            return True
        received = request.content.total_bytes


async def answer_and_close(
    request: web.Request, response: web.StreamResponse, *, linger_seconds: float, linger_bytes: int,
) -> web.StreamResponse:
    """Send `response` and close the connection, reading no more of the body than a staged close needs.

    Closing a socket with unread bytes sends a TCP reset, which can destroy the answer before the
    client reads it (RFC 9112 section 9.6), and a client still sending gets the reset first. So:
    answer, half-close (FIN), then drop what is still arriving for `linger_seconds`, chunk by chunk
    and never kept (memory stays flat), at most `linger_bytes`, and close. aiohttp's own lingering
    would go on for 10 s and keep the connection open for another request.
    """
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # the client left first: nobody to answer, nothing to log as an error
        request.protocol.force_close()
        return response
    transport = request.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
    dropped = 0
    try:
        async with asyncio.timeout(linger_seconds):
            while dropped < linger_bytes and (chunk := await request.content.readany()):
                dropped += len(chunk)
    except (TimeoutError, ClientPayloadError, ConnectionError):
        pass
    request.protocol.force_close()
    return response
