from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from backend_api.store.migrate import apply_migrations, discover
from tests.support.services import with_database


@pytest.fixture
async def empty_database(postgres_admin: str) -> AsyncIterator[str]:
    name = f"prgate_mig_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres_admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield with_database(postgres_admin, name)
    conn = await asyncpg.connect(postgres_admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def test_empty_database_to_head_then_rerun_is_noop(empty_database: str) -> None:
    applied = await apply_migrations(empty_database)
    assert applied == [name for _, name, _ in discover()]
    assert await apply_migrations(empty_database) == []
    conn = await asyncpg.connect(empty_database)
    try:
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert {
        "github_installations", "github_installation_repositories", "webhook_deliveries", "repo_settings",
        "contributors", "challenges", "bot_actions", "internal_nonces", "schema_migrations",
    } <= tables
    assert versions == [v for v, _, _ in discover()]


async def test_concurrent_migrators_apply_each_file_once(empty_database: str) -> None:
    import asyncio

    results = await asyncio.gather(*(apply_migrations(empty_database) for _ in range(4)))
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(name for _, name, _ in discover())


async def test_schema_enforces_one_pending_challenge_per_pr(empty_database: str) -> None:
    await apply_migrations(empty_database)
    conn = await asyncpg.connect(empty_database)
    insert = """INSERT INTO challenges (installation_id, repo_id, repo_full_name, pr_number, pr_id, author_id,
                                        author_login, status, deadline_at)
                VALUES (1, 1, 'o/r', 1, 1, 1, 'a', $1, now())"""
    try:
        await conn.execute(insert, "PENDING")
        await conn.execute(insert, "CANCELLED")  # resolved ones may pile up
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, "PENDING")
    finally:
        await conn.close()


async def test_token_like_columns_hold_long_tokens(empty_database: str) -> None:
    await apply_migrations(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute(
            """INSERT INTO challenges (installation_id, repo_id, repo_full_name, pr_number, pr_id, author_id,
                                       author_login, status, deadline_at, token_hash)
               VALUES (1, 1, 'o/r', 1, 1, 1, 'a', 'PENDING', now(), $1)""",
            "t" * 600,
        )
        await conn.execute("INSERT INTO internal_nonces (nonce) VALUES ($1)", "n" * 600)
    finally:
        await conn.close()


def test_bad_migration_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        discover(tmp_path)


async def test_failed_migration_rolls_back_and_is_not_recorded(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await apply_migrations(empty_database, tmp_path)
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT to_regclass('good')") == "good"
        assert [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")] == ["0001_good"]
    finally:
        await conn.close()


async def test_bot_actions_is_vacuumed_after_a_fixed_number_of_changes(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'bot_actions'")
    assert {"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=20000"} <= set(options)


async def test_0010_backfills_repo_ids_and_refuses_open_actions_it_cannot_place(
    empty_database: str, tmp_path: Path
) -> None:
    import shutil

    from backend_api.store.migrate import DEFAULT_MIGRATIONS_DIR

    for _, _, path in discover():
        if path.name < "0010":
            shutil.copy(path, tmp_path / path.name)
    await apply_migrations(empty_database, tmp_path)
    conn = await asyncpg.connect(empty_database)
    insert = """INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number,
                                         payload, challenge_id, status)
                VALUES ('github', 'UPSERT_PR_COMMENT', 1, NULL, $1, 1, '{}', $2, $3) RETURNING action_id"""
    try:
        await conn.execute("""INSERT INTO github_installations (installation_id, account_id, account_login,
                                  account_type, repository_selection, status)
                              VALUES (1, 1, 'a', 'Organization', 'selected', 'ACTIVE')""")
        # a/one: one id ever; a/old: two ids (renamed, then reused) - ambiguous.
        await conn.execute("""INSERT INTO github_installation_repositories (installation_id, repo_id, full_name)
                              VALUES (1, 10, 'a/one'), (1, 20, 'a/old'), (1, 21, 'a/old')""")
        challenge = await conn.fetchval(
            """INSERT INTO challenges (installation_id, repo_id, repo_full_name, pr_number, pr_id, author_id,
                                       author_login, status, deadline_at)
               VALUES (1, 20, 'a/old', 1, 1, 1, 'x', 'PENDING', now()) RETURNING challenge_id""")
        by_challenge = await conn.fetchval(insert, "a/old", challenge, "PENDING")
        by_name = await conn.fetchval(insert, "A/One", None, "PENDING")
        ambiguous = await conn.fetchval(insert, "a/old", None, "PENDING")
        finished = await conn.fetchval(insert, "a/old", None, "DONE")
    finally:
        await conn.close()
    assert "0010_bot_actions_by_repo_id" in await apply_migrations(empty_database, DEFAULT_MIGRATIONS_DIR)
    conn = await asyncpg.connect(empty_database)
    try:
        rows = {r["action_id"]: (r["repo_id"], r["status"]) for r in await conn.fetch(
            "SELECT action_id, repo_id, status FROM bot_actions")}
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, "a/x", None, "PENDING")
    finally:
        await conn.close()
    assert rows == {by_challenge: (20, "PENDING"), by_name: (10, "PENDING"), ambiguous: (None, "CANCELLED"),
                    finished: (None, "DONE")}


async def _deliveries_schema(dsn: str) -> tuple[list[tuple[str, str, bool, str | None]], list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        columns = [(r["column_name"], r["data_type"], r["is_nullable"] == "YES", r["column_default"])
                   for r in await conn.fetch(
                       """SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
                          WHERE table_name = 'webhook_deliveries' ORDER BY column_name""")]
        indexes = sorted(r["indexdef"] for r in await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'webhook_deliveries'"))
    finally:
        await conn.close()
    return columns, indexes


async def test_0017_keys_deliveries_by_provider_old_and_new_installs_end_the_same(
    empty_database: str, postgres_admin: str, tmp_path: Path
) -> None:
    import shutil

    from backend_api.store.migrate import DEFAULT_MIGRATIONS_DIR

    for _, _, path in discover():
        if path.name < "0017":
            shutil.copy(path, tmp_path / path.name)
    await apply_migrations(empty_database, tmp_path)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("""INSERT INTO webhook_deliveries (delivery_id, event_name, action, status)
                              VALUES ('d-1', 'pull_request', 'opened', 'ACCEPTED')""")
    finally:
        await conn.close()
    assert "0017_webhook_deliveries_by_provider" in await apply_migrations(empty_database, DEFAULT_MIGRATIONS_DIR)

    fresh = f"prgate_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_admin)
    await admin.execute(f'CREATE DATABASE "{fresh}"')
    await admin.close()
    try:
        fresh_dsn = with_database(postgres_admin, fresh)
        await apply_migrations(fresh_dsn)
        assert await _deliveries_schema(empty_database) == await _deliveries_schema(fresh_dsn)
    finally:
        admin = await asyncpg.connect(postgres_admin)
        await admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
        await admin.close()

    conn = await asyncpg.connect(empty_database)
    try:
        # The row written before 0017 is GitHub's; the same delivery id may now arrive from another provider.
        assert await conn.fetchval("SELECT provider FROM webhook_deliveries WHERE delivery_id = 'd-1'") == "github"
        await conn.execute("""INSERT INTO webhook_deliveries (provider, delivery_id, event_name, action, status)
                              VALUES ('bitbucket', 'd-1', 'pull_request', 'opened', 'ACCEPTED')""")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("""INSERT INTO webhook_deliveries (delivery_id, event_name, action, status)
                                  VALUES ('d-1', 'pull_request', 'opened', 'ACCEPTED')""")
    finally:
        await conn.close()
