"""Fault-injection harness: the whole stack as real processes, with knobs to break it.

Two backends (the receiver talks to A, the workers to B; both share one database), one webhook
receiver, several workers and the stateful GitHub simulator. Everything asserted at the end comes
from the simulator's own records (comments, request log) and the database, never from the code
under test's own view of what it did.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
from cryptography.fernet import Fernet

from backend_api.challenges import messages
from tests.conftest import INTERNAL_ENV
from tests.support.github_sim import APP_ID, app_keys
from tests.support.processes import Fleet, Proc, eventually, free_port, wait_http_ok
from tests.support.webhooks import BITBUCKET_MASTER

T = TypeVar("T")
MARKER = messages.PR_COMMENT_MARKER
COMMENT_CREATE = r"^/repositories/\d+/issues/\d+/comments$"  # the worker acts by repository id


@dataclass
class Figures:
    events: int = 0
    deliveries_sent: int = 0
    duplicates_sent: int = 0
    redeliveries: int = 0  # sends GitHub would have to repeat: the receiver did not answer 2xx
    worker_kills: int = 0
    restarts: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    failed_actions: int = 0
    reclaimed_actions: int = 0
    bitbucket_events: int = 0  # of `events`: Bitbucket PRs beside GitHub's
    duplicates: int = -1
    lost: int = -1

    def line(self) -> str:
        faults = sum(self.faults.values())
        detail = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (
            f"CHAOS FIGURES: events={self.events} (bitbucket={self.bitbucket_events}) "
            f"deliveries_sent={self.deliveries_sent} "
            f"duplicates_sent={self.duplicates_sent} redeliveries={self.redeliveries} "
            f"worker_kills={self.worker_kills} restarts={len(self.restarts)} ({', '.join(self.restarts)}) "
            f"faults_injected={faults} ({detail}) failed_actions={self.failed_actions} "
            f"reclaimed_actions={self.reclaimed_actions} duplicates={self.duplicates} lost={self.lost}"
        )


@dataclass
class ChaosStack:
    fleet: Fleet
    db: asyncpg.Pool
    env: dict[str, str]
    worker_env: dict[str, str]
    simulator_url: str
    bot_url: str
    backend_urls: list[str]
    backend_envs: list[dict[str, str]]
    backends: list[Proc]
    workers: dict[str, Proc] = field(default_factory=dict)
    figures: Figures = field(default_factory=Figures)

    # ---- processes ---------------------------------------------------------------------------

    def start_worker(self, **extra: str) -> Proc:
        """A worker with a fresh WORKER_ID (empty local state, as after a pod reschedule)."""
        worker_id = f"w-{uuid.uuid4().hex[:8]}"
        proc = self.fleet.start(worker_id, "worker", {**self.worker_env, "WORKER_ID": worker_id, **extra})
        self.workers[worker_id] = proc
        return proc

    def kill_worker(self, worker_id: str) -> None:
        self.workers.pop(worker_id).kill()
        self.figures.worker_kills += 1

    def kill_random_worker_and_replace(self, rng: random.Random) -> str:
        victim = rng.choice(sorted(self.workers))
        self.kill_worker(victim)
        self.start_worker()
        return victim

    async def restart_backend(self, index: int) -> None:
        """SIGKILL one backend and start it again on the same port."""
        self.backends[index].kill()
        name = f"backend-{'ab'[index]}-{len(self.figures.restarts)}"
        self.backends[index] = self.fleet.start(name, "backend", self.backend_envs[index])
        self.figures.restarts.append(f"backend-{'ab'[index]}")
        await wait_http_ok(f"{self.backend_urls[index]}/readyz", self.backends[index], timeout=60)

    # ---- simulator -----------------------------------------------------------------------------

    async def sim(self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
        async with session.request(method, f"{self.simulator_url}{path}", json=body) as resp:
            assert resp.status in (200, 201), (path, resp.status, await resp.text())
            return await resp.json()

    async def install(self, session: aiohttp.ClientSession, inst: int, login: str,
                      repos: list[tuple[int, str]]) -> None:
        await self.sim(session, "POST", "/_sim/installations", {
            "id": inst, "account": {"login": login, "id": inst * 10, "type": "Organization"},
            "repositories": [{"id": rid, "full_name": name} for rid, name in repos], "webhook": True,
        })
        for repo_id, _ in repos:
            async def installed(repo_id: int = repo_id) -> bool:
                url = f"{self.backend_urls[0]}/api/v1/repos/{repo_id}/github-app-status"
                async with session.get(url) as resp:
                    return resp.status == 200 and bool((await resp.json())["installed"])

            await eventually(installed, timeout=60)

    async def create_pr(self, session: aiohttp.ClientSession, inst: int, repo: str, number: int,
                        login: str, user_id: int) -> dict[str, Any]:
        """Open a PR in the simulator *without* a webhook; returns the opened delivery's payload."""
        pr = await self.sim(session, "POST", "/_sim/pulls", {
            "repo": repo, "number": number, "author": {"login": login, "id": user_id, "type": "User"},
            "author_association": "NONE", "head_sha": f"{user_id:040x}",
        })
        pr.pop("deliveries", None)
        return {"action": "opened", "number": number, "pull_request": pr, "repository": pr["base"]["repo"],
                "installation": {"id": inst}, "sender": pr["user"]}

    async def send(self, session: aiohttp.ClientSession, event: str, payload: dict[str, Any],
                   delivery_id: str) -> None:
        """Deliver through the simulator (signed as GitHub signs); repeat until answered 2xx,
        as GitHub's redelivery would."""
        for _ in range(60):
            delivery = await self.sim(session, "POST", "/_sim/webhooks",
                                      {"event": event, "payload": payload, "delivery_id": delivery_id})
            self.figures.deliveries_sent += 1
            if delivery.get("status_code") and 200 <= int(delivery["status_code"]) < 300:
                return
            self.figures.redeliveries += 1
            await asyncio.sleep(0.5)
        raise AssertionError(f"delivery {delivery_id} never accepted: {delivery}")

    async def requests(self, session: aiohttp.ClientSession, *, bitbucket: bool = False,
                       **query: str) -> list[dict[str, Any]]:
        """The simulator's request log: GitHub's, or its Bitbucket's (each provider keeps its own)."""
        base = self.bitbucket_url if bitbucket else self.simulator_url
        async with session.get(f"{base}/_sim/requests", params=query) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["requests"])

    async def comments(self, session: aiohttp.ClientSession, repo: str, number: int) -> list[str]:
        bodies = await self.sim(session, "GET", f"/_sim/repos/{repo}/pulls/{number}/comments")
        return [c["body"] for c in bodies if MARKER in c["body"]]

    @property
    def bitbucket_url(self) -> str:
        return f"{self.simulator_url}/bitbucket"

    async def resend_bitbucket(self, session: aiohttp.ClientSession, request_uuid: str) -> None:
        """Bitbucket's "Resend request" of one delivery (the same body, a new X-Request-UUID), repeated
        until the receiver answers 2xx: what an operator does when Bitbucket's own two retries ran out."""
        for _ in range(60):
            attempt = await self.sim(session, "POST", f"/bitbucket/_sim/deliveries/{request_uuid}/resend")
            self.figures.deliveries_sent += 1
            if attempt["status"] is not None and 200 <= int(attempt["status"]) < 300:
                return
            self.figures.redeliveries += 1
            await asyncio.sleep(0.5)
        raise AssertionError(f"Bitbucket delivery {request_uuid} never accepted: {attempt}")

    # ---- database ------------------------------------------------------------------------------

    async def query(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run a read, retrying across a PostgreSQL restart."""
        for attempt in range(60):
            try:
                async with self.db.acquire() as conn:
                    return await fn(conn)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.CannotConnectNowError):
                if attempt == 59:
                    raise
                await asyncio.sleep(1)
        raise AssertionError("unreachable")

    async def outbox_drained(self) -> bool:
        return bool(await self.query(lambda c: c.fetchval(
            "SELECT count(*) = 0 FROM bot_actions WHERE status IN ('PENDING', 'CLAIMED')")))

    async def count(self, sql: str, *args: Any) -> int:
        return int(await self.query(lambda c: c.fetchval(sql, *args)))


def _backend_env(base: dict[str, str], port: int, extra: dict[str, str]) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {**base, "BACKEND_PORT": str(port), "BACKEND_URL": url, "BACKEND_PUBLIC_URL": url, **extra}


@asynccontextmanager
async def chaos_stack(
    db: asyncpg.Pool, database_url: str, redis_url: str, tmp_path: Path, *, workers: int = 4,
    backend_extra: dict[str, str] | None = None, worker_extra: dict[str, str] | None = None,
) -> AsyncIterator[ChaosStack]:
    fleet = Fleet()
    ports = {name: free_port() for name in ("backend-a", "backend-b", "bot", "simulator")}
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_keys().private_pem)
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, **INTERNAL_ENV,
        "BACKEND_HOST": "127.0.0.1", "BOT_HOST": "127.0.0.1", "BOT_PORT": str(ports["bot"]),
        "SIMULATOR_PORT": str(ports["simulator"]),
        "SIMULATOR_WEBHOOK_URL": f"http://127.0.0.1:{ports['bot']}/webhooks/github",
        "SIMULATOR_SECONDARY_LIMIT_PER_MINUTE": "1000000", "SIMULATOR_RATE_LIMIT_PER_HOUR": "100000000",
        "GITHUB_API_URL": f"http://127.0.0.1:{ports['simulator']}", "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_WEB_URL": f"http://127.0.0.1:{ports['simulator']}",
        "GITHUB_CLIENT_ID": "prgate-sim-oauth-client", "GITHUB_CLIENT_SECRET": "prgate-sim-oauth-secret",
        "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_WEBHOOK_SECRET": secrets.token_hex(16),
        "ARQ_QUEUE_NAME": f"prgate-chaos-{uuid.uuid4().hex}", "WORKER_METRICS_PORT": "0",
        "FORWARD_TIMEOUT_SECONDS": "2", "SWEEP_INTERVAL_SECONDS": "0.5",
        "BITBUCKET_API_URL": f"http://127.0.0.1:{ports['simulator']}/bitbucket",
        "BITBUCKET_WEB_URL": f"http://127.0.0.1:{ports['simulator']}/bitbucket",
        "BITBUCKET_WEBHOOK_SECRET": BITBUCKET_MASTER, "PRGATE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{ports['bot']}",
        "ACTION_MAX_ATTEMPTS": "30", "ACTION_BACKOFF_BASE_SECONDS": "0.2", "ACTION_BACKOFF_CAP_SECONDS": "5",
    }
    backend_envs = [_backend_env(env, ports[name], backend_extra or {}) for name in ("backend-a", "backend-b")]
    backend_urls = [e["BACKEND_URL"] for e in backend_envs]
    worker_env = {
        **env, "BACKEND_URL": backend_urls[1], "WORKER_LEASE_SECONDS": "6", "WORKER_CLAIM_WAIT_SECONDS": "2",
        "GITHUB_WRITES_PER_MINUTE": "1000000", "WORKER_SHUTDOWN_GRACE_SECONDS": "5",
        # Half a lease holds one write's worst case plus the report margin (bot_worker/worker/main.py).
        "PROVIDER_TIMEOUT_SECONDS": "2", "WORKER_REPORT_MARGIN_SECONDS": "1", **(worker_extra or {}),
    }
    simulator = fleet.start("simulator", "simulator", env)
    backends = [fleet.start(f"backend-{'ab'[i]}", "backend", backend_envs[i]) for i in range(2)]
    # The receiver can name one backend; the workers (claim loop and arq forwards) use the other.
    bot = fleet.start("bot", "bot", {**env, "BACKEND_URL": backend_urls[0]})
    stack = ChaosStack(fleet, db, env, worker_env, f"http://127.0.0.1:{ports['simulator']}",
                       f"http://127.0.0.1:{ports['bot']}", backend_urls, backend_envs, backends)
    try:
        await wait_http_ok(f"{stack.simulator_url}/_sim/health", simulator, timeout=60)
        for url, proc in zip(backend_urls, backends, strict=True):
            await wait_http_ok(f"{url}/readyz", proc, timeout=60)
        await wait_http_ok(f"{stack.bot_url}/healthz", bot, timeout=60)
        for _ in range(workers):
            stack.start_worker()
        yield stack
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        fleet.stop_all()


def fault_counts(log: list[dict[str, Any]]) -> dict[str, int]:
    """Faults the simulator injected, by kind, from its own request log."""
    return dict(Counter(r["fault"] for r in log if r.get("fault")))


def restart_postgres() -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"], check=True)


def restart_redis() -> None:
    subprocess.run(["redis-cli", "shutdown", "nosave"], check=False)
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                    "--logfile", "/var/log/redis/ci.log"], check=True)


def restart_services_allowed() -> bool:
    return os.environ.get("PRGATE_CHAOS_RESTART_SERVICES") == "1"
