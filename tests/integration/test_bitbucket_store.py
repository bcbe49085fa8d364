"""backend_api/store/bitbucket.py against real PostgreSQL."""

from __future__ import annotations

import uuid

import asyncpg

from backend_api.store import bitbucket as store
from backend_api.store.bitbucket import AccountInfo, DiscoveredRepository, WorkspaceStatus


def _u() -> str:
    return str(uuid.uuid4())


def _repo(name: str, repo_uuid: str | None = None) -> DiscoveredRepository:
    return DiscoveredRepository(repo_uuid=repo_uuid or _u(), full_name=name, main_branch="main", private=True)


async def test_upsert_by_uuid_replaces_token_and_reactivates(db: asyncpg.Pool) -> None:
    ws = _u()
    async with db.acquire() as conn:
        first = await store.upsert_workspace(conn, workspace_uuid=ws, slug="Acme", name="Acme", token_ciphertext=b"c1")
        assert first.tenant_id >= 10**15
        assert first.status is WorkspaceStatus.ACTIVE
        await store.disconnect(conn, first.tenant_id)
        gone = await store.get_by_id(conn, first.tenant_id)
        assert gone is not None
        assert gone.status is WorkspaceStatus.DISCONNECTED
        assert gone.token_ciphertext is None
        again = await store.upsert_workspace(conn, workspace_uuid=ws, slug="acme", name="A", token_ciphertext=b"c2")
        assert again.tenant_id == first.tenant_id
        assert again.status is WorkspaceStatus.ACTIVE
        assert again.token_ciphertext == b"c2"
        assert again.disconnected_at is None
        by_slug = await store.get_by_slug(conn, "ACME")
        by_uuid = await store.get_by_uuid(conn, ws)
        assert by_slug is not None
        assert by_uuid is not None
        assert by_slug.tenant_id == by_uuid.tenant_id == first.tenant_id
        assert await store.get_by_uuid(conn, "not-a-uuid") is None
        assert "c2" not in repr(again)


async def test_a_slug_taken_by_a_new_workspace_moves_off_the_old_row(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        old = await store.upsert_workspace(conn, workspace_uuid=_u(), slug="acme", name="", token_ciphertext=b"c")
        new = await store.upsert_workspace(conn, workspace_uuid=_u(), slug="acme", name="", token_ciphertext=b"c")
        assert new.tenant_id != old.tenant_id
        found = await store.get_by_slug(conn, "acme")
        assert found is not None
        assert found.tenant_id == new.tenant_id


async def test_discovery_diff_adds_and_removes(db: asyncpg.Pool) -> None:
    a, b, c = _u(), _u(), _u()
    async with db.acquire() as conn:
        ws = await store.upsert_workspace(conn, workspace_uuid=_u(), slug="acme", name="", token_ciphertext=b"c")
        diff = await store.apply_discovery(conn, ws.tenant_id, [_repo("acme/a", a), _repo("acme/b", b)])
        assert diff.added == ("acme/a", "acme/b")
        assert diff.removed == ()
        ids = await store.repo_ids(conn, [a, b])
        assert set(ids) == {a, b}
        assert all(i >= 10**15 for i in ids.values())
        diff = await store.apply_discovery(conn, ws.tenant_id, [_repo("acme/a", a), _repo("acme/c", c)])
        assert diff.added == ("acme/c",)
        assert diff.removed == ("acme/b",)
        live = await store.list_repositories(conn, ws.tenant_id)
        assert [r.full_name for r in live] == ["acme/a", "acme/c"]
        # the same listing again changes nothing; an id survives removal and return
        assert await store.apply_discovery(conn, ws.tenant_id, [_repo("acme/a", a), _repo("acme/c", c)]) == \
            store.DiscoveryDiff((), ())
        diff = await store.apply_discovery(conn, ws.tenant_id, [_repo("acme/a", a), _repo("acme/b2", b)])
        assert diff.added == ("acme/b2",)
        assert (await store.repo_ids(conn, [b]))[b] == ids[b]
        row = await store.get_by_id(conn, ws.tenant_id)
        assert row is not None
        assert row.last_discovered_at is not None


async def test_accounts_map_to_stable_user_ids(db: asyncpg.Pool) -> None:
    u1, u2 = _u(), _u()
    async with db.acquire() as conn:
        first = await store.user_ids(conn, [AccountInfo(u1, "557058:1", "ann"), AccountInfo(u2, None, "bob")])
        again = await store.user_ids(conn, [AccountInfo(u1, None, "ann2"), AccountInfo(u2, "557058:2", "bob")])
        assert first == again
        assert len(set(first.values())) == 2
        row = await conn.fetchrow("SELECT account_id, nickname FROM bitbucket_accounts WHERE account_uuid = $1", u1)
        assert row is not None
        assert (row["account_id"], row["nickname"]) == ("557058:1", "ann2")


async def test_purge_deletes_the_tenant_only(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        ws = await store.upsert_workspace(conn, workspace_uuid=_u(), slug="acme", name="", token_ciphertext=b"c")
        other = await store.upsert_workspace(conn, workspace_uuid=_u(), slug="other", name="", token_ciphertext=b"c")
        await store.apply_discovery(conn, ws.tenant_id, [_repo("acme/a")])
        await store.apply_discovery(conn, other.tenant_id, [_repo("other/a")])
        for tenant in (ws.tenant_id, other.tenant_id):
            await conn.execute(
                "INSERT INTO contributors (installation_id, github_user_id, login) VALUES ($1, 1, 'x')", tenant
            )
        async with conn.transaction():
            deleted = await store.purge(conn, ws.tenant_id)
        assert deleted["contributors"] == 1
        assert deleted["bitbucket_repositories"] == 1
        assert await store.get_by_id(conn, ws.tenant_id) is None
        assert await store.get_by_id(conn, other.tenant_id) is not None
        assert await conn.fetchval("SELECT count(*) FROM contributors") == 1
