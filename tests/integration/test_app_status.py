from __future__ import annotations

from typing import Any

from backend_api.keys import DB_POOL
from backend_api.store import installations
from tests.support.ingest import send_installation
from tests.support.payloads import installation_payload, installation_repositories_payload
from tests.support.signed import SignedClient


async def status(backend: SignedClient, repo_id: int) -> dict[str, Any]:
    """The resolution as the store makes it; the public route must say `installed` and nothing else."""
    resp = await backend.client.get(f"/api/v1/repos/{repo_id}/github-app-status")
    assert resp.status == 200
    resolved = await _resolved(backend, repo_id)
    assert await resp.json() == {"repo_id": repo_id, "installed": resolved["installed"]}
    return resolved


async def _resolved(backend: SignedClient, repo_id: int) -> dict[str, Any]:
    pool = backend.client.app[DB_POOL]
    async with pool.acquire() as conn:
        return (await installations.app_status(conn, repo_id)).model_dump(mode="json")


async def test_never_installed(backend: SignedClient) -> None:
    assert await status(backend, 5001) == {
        "repo_id": 5001, "repo_full_name": None, "installed": False, "installation_id": None,
        "installation_status": "NOT_INSTALLED", "account_login": None, "repository_selection": None,
    }


async def test_installed(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    assert await status(backend, 5001) == {
        "repo_id": 5001, "repo_full_name": "octo-org/widgets", "installed": True, "installation_id": 1001,
        "installation_status": "ACTIVE", "account_login": "octo-org", "repository_selection": "selected",
    }


async def test_suspended_is_installed_but_suspended(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    await send_installation(backend, "installation", installation_payload("suspend"))
    body = await status(backend, 5001)
    assert (body["installed"], body["installation_status"], body["installation_id"]) == (True, "SUSPENDED", 1001)


async def test_deleted_installation_is_not_installed(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    await send_installation(backend, "installation", installation_payload("deleted"))
    body = await status(backend, 5001)
    assert (body["installed"], body["installation_status"], body["installation_id"]) == (False, "DELETED", 1001)


async def test_removed_repository_is_not_installed(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created"))
    await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("removed", repos=[(5001, "octo-org/widgets")]),
    )
    body = await status(backend, 5001)
    assert (body["installed"], body["installation_status"], body["repo_full_name"]) == (
        False, "NOT_INSTALLED", "octo-org/widgets"
    )
    # Added back: installed again.
    await send_installation(
        backend, "installation_repositories",
        installation_repositories_payload("added", repos=[(5001, "octo-org/widgets")]),
    )
    assert (await status(backend, 5001))["installed"] is True


async def test_resolves_by_membership_not_by_owner_login(backend: SignedClient) -> None:
    # The account owns repos 5001 and 5002 but only 5001 is selected: 5002 is not installed.
    await send_installation(backend, "installation", installation_payload("created", repos=[(5001, "octo-org/a")]))
    assert (await status(backend, 5002))["installed"] is False


async def test_reinstall_under_new_installation_id_wins_over_deleted_one(backend: SignedClient) -> None:
    await send_installation(backend, "installation", installation_payload("created", installation_id=1))
    await send_installation(backend, "installation", installation_payload("deleted", installation_id=1))
    await send_installation(backend, "installation", installation_payload("created", installation_id=2))
    body = await status(backend, 5001)
    assert (body["installed"], body["installation_id"], body["installation_status"]) == (True, 2, "ACTIVE")


async def test_health_and_readiness(backend: SignedClient) -> None:
    assert (await (await backend.client.get("/healthz")).json())["status"] == "ok"
    ready = await backend.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"database": "ok"}
