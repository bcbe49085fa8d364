"""The GitHub simulator for `python -m bench.e2e`: `python -m bench.peers.simulator`.

Exactly what `prgate simulator` serves (same settings, same app), plus read-only routes
`GET /_sim/bench/comments`, `/_sim/bench/deliveries` and `/_sim/bench/requests` that expose the
simulator's own float timestamps (and request counts by path shape). The public `/_sim/` API
renders every time as `YYYY-MM-DDTHH:MM:SSZ` (one-second resolution), which is useless for
latencies in milliseconds. Nothing is read from those routes while a measurement runs, except a
comment count.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from typing import Any


def serve_simulator() -> int:
    """`prgate simulator` (same settings and app) plus read-only `/_sim/bench/` routes with float times."""
    from aiohttp import web

    from prgate.logs import setup_logging
    from prgate.simulator import SIM_STATE, SimulatorConfig, create_simulator_app
    from prgate.simulator.bitbucket.config import BitbucketConfig
    from prgate.simulator_env import simulator_settings

    setup_logging("prgate-simulator", os.environ.get("LOG_LEVEL", "INFO"))
    env = simulator_settings()
    config = SimulatorConfig(
        app_id=env.app_id, app_public_key_pem=env.public_key_pem(), webhook_url=env.webhook_url,
        webhook_secret=env.webhook_secret.get_secret_value(), seed=env.seed,
        secondary_limit_per_minute=env.secondary_limit_per_minute, rate_limit_per_hour=env.rate_limit_per_hour,
    )
    # Bitbucket under /bitbucket, configured as `prgate simulator` configures it (its hourly budget too).
    bitbucket = BitbucketConfig(
        seed=env.seed, rate_limit_per_hour=env.bitbucket_rate_limit_per_hour,
        oauth_client_id=env.bitbucket_oauth_client_id,
        oauth_client_secret=env.bitbucket_oauth_client_secret.get_secret_value(),
    )
    app = create_simulator_app(config, bitbucket=bitbucket)
    state = app[SIM_STATE]

    async def comments(request: web.Request) -> web.Response:
        if request.query.get("count_only"):
            # Comment ids only grow: the newest id tells how many were created since a cursor.
            return web.json_response({"count": len(state.comments), "max_id": next(reversed(state.comments), 0)})
        after = int(request.query.get("after_id", "0"))
        rows: list[dict[str, Any]] = []
        for comment in list(state.comments.values()):
            if comment.id <= after:
                continue
            repo = state.repositories.get(comment.repo_id)
            rows.append({
                "id": comment.id, "repo": repo.full_name if repo else None, "number": comment.issue_number,
                "created_at": comment.created_at, "updated_at": comment.updated_at,
                "user_type": comment.user.type, "body": comment.body,
            })
        return web.json_response({"count": len(state.comments), "comments": rows})

    async def deliveries(request: web.Request) -> web.Response:
        after = int(request.query.get("after_id", "0"))
        rows = [
            {"id": d.id, "guid": d.guid, "event": d.event, "action": d.action, "status_code": d.status_code,
             "error": d.error, "delivered_at": d.delivered_at, "duration": d.duration}
            for d in list(state.deliveries) if d.id > after
        ]
        return web.json_response({"deliveries": rows})

    async def requests(request: web.Request) -> web.Response:
        """GitHub API requests since `since` (unix seconds), counted by method, status and path shape."""
        since = float(request.query.get("since", "0"))
        counts: dict[str, int] = {}
        for record in list(state.request_log):
            if record.at >= since:
                path = re.sub(r"/[0-9]+(?=/|$)", "/N", re.sub(r"/[0-9a-f]{40}(?=/|$)", "/SHA", record.path))
                key = f"{record.method} {record.status} {path}"
                counts[key] = counts.get(key, 0) + 1
        return web.json_response({"counts": counts})

    app.router.add_get("/_sim/bench/requests", requests)
    app.router.add_get("/_sim/bench/comments", comments)
    app.router.add_get("/_sim/bench/deliveries", deliveries)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, env.host, env.port).start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(serve_simulator())
