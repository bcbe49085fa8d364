"""The pure parts of API tokens (backend_api/auth/api_tokens.py, shared_contracts/api_tokens.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from backend_api.auth.api_tokens import (
    OPERATOR,
    TOKEN_RE,
    BearerProblem,
    Grant,
    RepoTenant,
    can_read,
    new_token,
    normalize_jira_site,
    parse_authorization,
    should_touch,
    token_hash,
)
from shared_contracts.api_tokens import ApiTokenCreate, TokenScope


def test_new_tokens_are_prefixed_random_and_hash_to_32_bytes() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(TOKEN_RE.fullmatch(t) for t in tokens)
    assert {len(token_hash(t)) for t in tokens} == {32}


@pytest.mark.parametrize(("header", "problem"), [
    (None, None), ("Bearer", BearerProblem.MALFORMED), ("Basic abc", BearerProblem.MALFORMED),
    ("Bearer prgate_x", BearerProblem.MALFORMED), ("Bearer " + "prgate_" + "a" * 44, BearerProblem.MALFORMED),
])
def test_malformed_headers_are_told_apart_from_no_header(header: str | None, problem: BearerProblem | None) -> None:
    parsed = parse_authorization(header)
    assert parsed.token is None
    assert parsed.problem is problem


def test_the_scheme_ignores_case() -> None:
    token = new_token()
    assert parse_authorization(f"bEaReR {token}").token == token
    assert parse_authorization(f"  Bearer   {token} ").token == token


GITHUB_1, GITHUB_2, BB_1 = RepoTenant("github", 1), RepoTenant("github", 2), RepoTenant("bitbucket", 1)


@pytest.mark.parametrize(("grant", "readable"), [
    (OPERATOR, {GITHUB_1, GITHUB_2, BB_1}),
    (Grant(TokenScope.INSTALLATION, installation_id=1), {GITHUB_1}),
    # The same number on the other provider is another tenant.
    (Grant(TokenScope.WORKSPACE, workspace_id=1), {BB_1}),
    (Grant(TokenScope.JIRA_SITE, jira_site="https://acme.atlassian.net"), set()),
])
def test_can_read_only_the_grants_tenant(grant: Grant, readable: set[RepoTenant]) -> None:
    assert {t for t in (GITHUB_1, GITHUB_2, BB_1) if can_read(grant, t)} == readable


def test_last_used_is_touched_once_a_minute() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert should_touch(None, now)
    assert not should_touch(now - timedelta(seconds=59), now)
    assert should_touch(now - timedelta(seconds=60), now)


@pytest.mark.parametrize(("given", "stored"), [
    ("https://Acme.Atlassian.net/", "https://acme.atlassian.net"),
    ("  https://acme.atlassian.net  ", "https://acme.atlassian.net"),
    ("https://acme.atlassian.net:443", "https://acme.atlassian.net"),
    ("http://127.0.0.1:8099", "http://127.0.0.1:8099"),
])
def test_jira_sites_are_normalized(given: str, stored: str) -> None:
    assert normalize_jira_site(given) == stored


@pytest.mark.parametrize("bad", [
    "acme.atlassian.net", "ftp://acme.atlassian.net", "https://acme.atlassian.net/jira",
    "https://u:p@acme.atlassian.net", "https://acme.atlassian.net?x=1", "https://", "https://acme.atlassian.net:x",
])
def test_what_is_not_a_site_base_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Jira site"):
        normalize_jira_site(bad)


@pytest.mark.parametrize("body", [
    {"name": "n", "scope": "operator", "installation_id": 1},
    {"name": "n", "scope": "installation"},
    {"name": "n", "scope": "workspace", "workspace": "w", "jira_site": "https://x.atlassian.net"},
    {"name": "12", "scope": "operator"},
    {"name": "with space", "scope": "operator"},
    {"name": "", "scope": "operator"},
])
def test_a_create_names_exactly_its_scopes_target(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ApiTokenCreate.model_validate(body)
