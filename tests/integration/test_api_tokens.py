"""API tokens on the read APIs (docs/api-tokens.md): created and revoked through the real CLI
(a subprocess) against the real backend app on a real port and real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from backend_api.app import create_app
from backend_api.auth.session import SESSION_COOKIE, SessionCodec
from tests.conftest import ADMIN_SECRET, INTERNAL_SECRET, backend_settings
from tests.support.ingest import send_installation, send_pr
from tests.support.payloads import installation_payload, pull_request_payload
from tests.support.signed import SignedClient

ROOT = Path(__file__).resolve().parents[2]
HEAD = "0123456789abcdef0123456789abcdef01234567"
OPERATOR_LOGIN, OPERATOR_ID = "ops-person", 4242

# Two GitHub installations and one Bitbucket workspace, one repository each.
GITHUB_A = (1001, 5001, "octo-org/widgets")
GITHUB_B = (2002, 7001, "acme/x")
WORKSPACE_SLUG, BITBUCKET_REPO = "team-bb", "team-bb/api"

# Every per-repository read route (by id and by name) the token path covers.
READ_SUFFIXES = ("settings", "challenges", "actions", "installation")


@dataclass
class Stack:
    client: TestClient[Any, Any]
    backend: SignedClient
    codec: SessionCodec
    data_dir: Path
    workspace_id: int
    bitbucket_repo_id: int
    outputs: list[str]  # everything the CLI printed, for the leak check

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def cli(self, *args: str, expect: int = 0) -> str:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
            "BACKEND_URL": self.url, "PRGATE_ADMIN_SECRETS": ADMIN_SECRET,
            "PRGATE_DATA_DIR": str(self.data_dir),  # no running stack's .data/env in the way
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "prgate.cli", "api-token", *args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        self.outputs += [out.decode(), err.decode()]
        assert proc.returncode == expect, (proc.returncode, out.decode(), err.decode())
        return out.decode() if expect == 0 else err.decode()

    async def create(self, name: str, *target: str) -> str:
        out = await self.cli("create", "--name", name, *target)
        return out.splitlines()[-1]  # `… | tail -1`

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        resp = await self.client.get(path, headers=headers or {})
        assert resp.content_type == "application/json", (path, resp.status, await resp.text())
        return resp.status, await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_paths(repo_id: int, full_name: str) -> list[str]:
    return [f"/api/v1/repos/{ref}/{suffix}" for ref in (repo_id, full_name) for suffix in READ_SUFFIXES]


@pytest.fixture
async def stack(db: asyncpg.Pool, database_url: str, aiohttp_client: Any, tmp_path: Path) -> Stack:
    settings = backend_settings(database_url, PRGATE_OPERATORS=f"{OPERATOR_LOGIN}:{OPERATOR_ID}")
    client = await aiohttp_client(create_app(settings))
    backend = SignedClient(client, INTERNAL_SECRET)
    for installation_id, repo_id, full_name in (GITHUB_A, GITHUB_B):
        owner = full_name.split("/")[0]
        await send_installation(backend, "installation", installation_payload(
            "created", installation_id=installation_id, account_login=owner, account_id=installation_id + 1,
            repos=[(repo_id, full_name)],
        ))
        answer = await send_pr(backend, pull_request_payload(
            "opened", installation_id=installation_id, repo_id=repo_id, full_name=full_name, number=3, head_sha=HEAD,
        ))
        assert answer["decision"] == "GATE", answer
    # No connect flow on this branch yet: the workspace and its repository as the connect writes them.
    async with db.acquire() as conn:
        workspace_id = await conn.fetchval(
            "INSERT INTO bitbucket_workspaces (workspace_uuid, slug) VALUES ($1, $2) RETURNING tenant_id",
            uuid.uuid4(), WORKSPACE_SLUG,
        )
        bb_repo = await conn.fetchval(
            """INSERT INTO bitbucket_repositories (tenant_id, repo_uuid, full_name) VALUES ($1, $2, $3)
               RETURNING repo_id""",
            workspace_id, uuid.uuid4(), BITBUCKET_REPO,
        )
    return Stack(client, backend, SessionCodec.from_settings(settings), tmp_path, workspace_id, bb_repo, [])


async def test_a_token_made_by_the_cli_reads_and_is_refused_once_revoked(
    stack: Stack, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    installation_id, repo_id, full_name = GITHUB_A
    token = await stack.create("ci-reader", "--installation", str(installation_id))
    assert token.startswith("prgate_")
    assert len(token) == len("prgate_") + 43

    for path in read_paths(repo_id, full_name):
        status, body = await stack.get(path, bearer(token))
        assert status == 200, (path, body)
    _, challenges = await stack.get(f"/api/v1/repos/{repo_id}/challenges", bearer(token))
    assert [c["pr_number"] for c in challenges["items"]] == [3]
    # Reads only: a write with a token and no session is still signed out.
    resp = await stack.client.put(f"/api/v1/repos/{repo_id}/settings", json={}, headers=bearer(token))
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"

    listed = await stack.cli("list")
    line = next(row for row in listed.splitlines() if "ci-reader" in row)
    assert f"installation {installation_id}" in line
    last_used = line.split("  ")[-2:]  # LAST USED and REVOKED columns
    assert last_used[-1].strip() == "-", line
    assert last_used[0].strip() not in ("", "-"), line

    # Only the hash is stored.
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM api_tokens WHERE name = 'ci-reader'")
    assert token.encode() not in b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())

    revoked = await stack.cli("revoke", "ci-reader")
    assert "revoked" in revoked
    for path in [*read_paths(repo_id, full_name), "/api/v1/repositories"]:
        status, body = await stack.get(path, bearer(token))
        assert (status, body["error"]) == (401, "unauthorized"), (path, body)
    again = await stack.cli("revoke", str(row["token_id"]))
    assert "already revoked" in again
    assert "ci-reader" in await stack.cli("list")

    # The token was printed once, by create: nowhere else, in no log of the backend or the CLI.
    printed = [text for text in stack.outputs if token in text]
    assert len(printed) == 1
    assert all(token not in str(record.__dict__) for record in caplog.records)
    metrics = await (await stack.client.get("/metrics")).text()
    assert 'backend_api_token_auth_total{outcome="revoked"} 9.0' in metrics
    assert token not in metrics


async def test_tenant_tokens_never_read_another_tenants_repositories(stack: Stack) -> None:
    tokens = {
        "github-a": (await stack.create("github-a", "--installation", str(GITHUB_A[0])), {GITHUB_A[1]}),
        "github-b": (await stack.create("github-b", "--installation", str(GITHUB_B[0])), {GITHUB_B[1]}),
        "workspace": (await stack.create("workspace", "--workspace", WORKSPACE_SLUG.upper()),
                      {stack.bitbucket_repo_id}),
        "jira": (await stack.create("jira", "--jira-site", "https://Acme.Atlassian.net/"), set()),
        "operator": (await stack.create("ops", "--operator"),
                     {GITHUB_A[1], GITHUB_B[1], stack.bitbucket_repo_id}),
    }
    github_repos = [GITHUB_A[1:], GITHUB_B[1:]]
    cross_tenant_reads = 0
    for name, (token, visible) in tokens.items():
        status, listing = await stack.get("/api/v1/repositories", bearer(token))
        assert status == 200, listing
        seen = {item["id"] for item in listing["items"]}
        cross_tenant_reads += len(seen - visible)
        assert seen == visible, name
        for repo_id, full_name in github_repos:
            for path in read_paths(repo_id, full_name):
                status, body = await stack.get(path, bearer(token))
                if repo_id in visible:
                    assert status == 200, (name, path, body)
                else:
                    cross_tenant_reads += status == 200
                    # Out of scope looks exactly like a repository that does not exist.
                    unknown = path.replace(str(repo_id), "999999").replace(full_name, "nobody/nothing")
                    unknown_status, unknown_body = await stack.get(unknown, bearer(token))
                    assert (status, body["error"]) == (unknown_status, unknown_body["error"]) == (404, "not_found")
                    assert body["message"].replace(str(repo_id), "X").replace(full_name, "X") == \
                        unknown_body["message"].replace("999999", "X").replace("nobody/nothing", "X")
    assert cross_tenant_reads == 0
    # The Bitbucket repository through the same routes, by id and by name with ?provider=bitbucket:
    # its workspace's token and the operator's read it; no other tenant's token does (404, as unknown).
    bb_paths = [f"/api/v1/repos/{stack.bitbucket_repo_id}/{suffix}" for suffix in READ_SUFFIXES] + [
        f"/api/v1/repos/{BITBUCKET_REPO}/{suffix}?provider=bitbucket" for suffix in READ_SUFFIXES]
    for name, (token, visible) in tokens.items():
        for path in bb_paths:
            status, body = await stack.get(path, bearer(token))
            if stack.bitbucket_repo_id in visible:
                assert status == 200, (name, path, body)
            else:
                cross_tenant_reads += status == 200
                assert (status, body["error"]) == (404, "not_found"), (name, path, body)
    assert cross_tenant_reads == 0
    # By name without ?provider the name is GitHub's, and no GitHub repository has it.
    for path in read_paths(stack.bitbucket_repo_id, BITBUCKET_REPO)[len(READ_SUFFIXES):]:
        assert (await stack.get(path, bearer(tokens["workspace"][0])))[0] == 404, path
    bb = next(i for i in (await stack.get("/api/v1/repositories", bearer(tokens["workspace"][0])))[1]["items"])
    assert bb == {"id": stack.bitbucket_repo_id, "provider": "bitbucket", "full_name": BITBUCKET_REPO,
                  "tenant_id": stack.workspace_id, "tenant": WORKSPACE_SLUG}
    listed = await stack.cli("list")
    assert "jira-site https://acme.atlassian.net" in listed
    assert f"workspace {WORKSPACE_SLUG}" in listed
    for token, _ in tokens.values():
        assert token not in listed
    metrics = await (await stack.client.get("/metrics")).text()
    # 48 on GitHub's repositories, 24 on the Bitbucket one (three other tenants' tokens, 8 paths each).
    assert 'backend_api_token_auth_total{outcome="out_of_scope"} 72.0' in metrics


async def test_an_operator_session_reads_everything_and_another_session_no_list(stack: Stack) -> None:
    _, cookie = stack.codec.issue(OPERATOR_ID, OPERATOR_LOGIN, time.time(), ())
    operator = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    status, listing = await stack.get("/api/v1/repositories", operator)
    assert status == 200
    assert {i["id"] for i in listing["items"]} == {GITHUB_A[1], GITHUB_B[1], stack.bitbucket_repo_id}
    for repo_id, full_name in (GITHUB_A[1:], GITHUB_B[1:]):
        for path in read_paths(repo_id, full_name):
            assert (await stack.get(path, operator))[0] == 200, path
    _, other_cookie = stack.codec.issue(9, "someone", time.time(), (GITHUB_A[0],))
    status, body = await stack.get("/api/v1/repositories", {"Cookie": f"{SESSION_COOKIE}={other_cookie}"})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await stack.get("/api/v1/repositories")
    assert (status, body["error"]) == (401, "unauthorized")


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "bearer prgate_short", "Basic dXNlcjpwYXNz", "Token prgate_" + "a" * 43,
    "Bearer prgate_" + "a" * 42 + "!", "Bearer ghp_" + "a" * 36, "Bearer prgate_" + "a" * 43 + " extra",
    "Bearer prgate_" + "A1b2C3d4" * 5 + "xyz",  # well-formed, never issued
])
async def test_a_wrong_or_malformed_authorization_header_is_401_json(stack: Stack, header: str) -> None:
    # Even beside a valid operator session: a bad token is refused, never passed over.
    _, cookie = stack.codec.issue(OPERATOR_ID, OPERATOR_LOGIN, time.time(), ())
    for path in [*read_paths(*GITHUB_A[1:]), "/api/v1/repositories"]:
        for extra in ({}, {"Cookie": f"{SESSION_COOKIE}={cookie}"}):
            resp = await stack.client.get(path, headers={"Authorization": header, **extra})
            assert resp.content_type == "application/json"
            body = await resp.json()
            assert (resp.status, body["error"]) == (401, "unauthorized"), (path, header, body)
            assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="prgate", error="invalid_')


async def test_create_refuses_unknown_tenants_and_taken_names(stack: Stack, db: asyncpg.Pool) -> None:
    err = await stack.cli("create", "--name", "x", "--workspace", "no-such-team", expect=1)
    assert "no connected Bitbucket workspace" in err
    err = await stack.cli("create", "--name", "x", "--installation", "31337", expect=1)
    assert "no GitHub installation 31337" in err
    err = await stack.cli("create", "--name", "x", "--jira-site", "https://acme.atlassian.net/browse/X-1", expect=1)
    assert "base URL" in err
    err = await stack.cli("create", "--name", "123", "--operator", expect=1)
    assert "422" in err
    await stack.create("dup", "--operator")
    err = await stack.cli("create", "--name", "DUP", "--operator", expect=1)
    assert "409" in err
    assert "already named" in err
    err = await stack.cli("revoke", "nothing-by-that-name", expect=1)
    assert "404" in err
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM api_tokens") == 1
    # A disconnected workspace is not a target either.
    async with db.acquire() as conn:
        await conn.execute("UPDATE bitbucket_workspaces SET status = 'DISCONNECTED'")
    await stack.cli("create", "--name", "y", "--workspace", WORKSPACE_SLUG, expect=1)


async def test_last_used_is_written_at_most_once_a_minute(stack: Stack, db: asyncpg.Pool) -> None:
    token = await stack.create("poller", "--operator")

    async def last_used() -> Any:
        async with db.acquire() as conn:
            return await conn.fetchval("SELECT last_used_at FROM api_tokens WHERE name = 'poller'")

    assert await last_used() is None
    assert (await stack.get("/api/v1/repositories", bearer(token)))[0] == 200
    first = await last_used()
    assert first is not None
    for _ in range(3):
        assert (await stack.get("/api/v1/repositories", bearer(token)))[0] == 200
    assert await last_used() == first
    async with db.acquire() as conn:
        await conn.execute("UPDATE api_tokens SET last_used_at = now() - interval '61 seconds'")
    backdated = await last_used()
    assert (await stack.get("/api/v1/repositories", bearer(token)))[0] == 200
    assert await last_used() > backdated


async def test_the_cli_without_an_admin_key_or_with_a_wrong_one_says_so(stack: Stack) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "BACKEND_URL": stack.url, "PRGATE_DATA_DIR": str(stack.data_dir),
           "PRGATE_ADMIN_SECRETS": "wrong-" + uuid.uuid4().hex * 2}
    for variables, message in ((env, "refused our signature"),
                               ({k: v for k, v in env.items() if k != "PRGATE_ADMIN_SECRETS"}, "not set")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "prgate.cli", "api-token", "list", cwd=ROOT, env=variables,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 2, err.decode()
        assert message in err.decode()
