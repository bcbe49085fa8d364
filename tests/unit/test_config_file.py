"""The repository config file, pure: parsing, merging, precedence, and the published schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend_api.challenges.config_file import ConfigFileError, Layer, effective, extends_target, merge, parse
from shared_contracts.owner import RepoSettings
from shared_contracts.repo_config import FILE_KEYS, RepoConfigFile, config_fields_table, config_json_schema

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "prgate.schema.json"


def test_the_committed_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA.read_text()) == config_json_schema(), (
        "regenerate docs/prgate.schema.json from shared_contracts.repo_config.config_json_schema()")


def test_the_file_keys_are_the_owner_api_settings_fields() -> None:
    assert set(FILE_KEYS) == set(RepoSettings.model_fields) - {"whitelist_user_ids"}
    assert set(RepoConfigFile.model_fields) - {"extends"} == set(FILE_KEYS)


def test_parse_keeps_only_the_keys_set_and_reads_extends() -> None:
    parsed = parse(b"_extends: other\nwarn_only: true\nwhitelist_logins: [a, b]\n")
    assert parsed.extends == "other"
    assert parsed.values() == {"warn_only": True, "whitelist_logins": ["a", "b"]}
    assert parse(b"").values() == {}


@pytest.mark.parametrize(("raw", "message"), [
    (b"warn_onyl: true", "warn_onyl: unknown key"),
    (b"deadline_seconds: 5", "deadline_seconds: Input should be greater than or equal to 10"),
    (b"warn_only: [1", "not valid YAML"),
    (b"- warn_only", "must be a mapping"),
    (b"\xff\xfe", "not UTF-8"),
    (b"whitelist_user_ids: [1]", "whitelist_user_ids: unknown key"),
])
def test_an_invalid_file_names_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(ConfigFileError, match=message):
        parse(raw)


def test_extends_target_defaults_to_the_same_owner() -> None:
    assert extends_target("base", "acme/app") == "acme/base"
    assert extends_target("other/base", "acme/app") == "other/base"


def test_merge_lets_the_later_file_win_and_records_where_each_key_came_from() -> None:
    merged = merge([Layer("acme/.github", {"warn_only": True, "deadline_seconds": 60}),
                    Layer("acme/app", {"deadline_seconds": 120})])
    assert merged.config == {"warn_only": True, "deadline_seconds": 120}
    assert merged.key_sources == {"warn_only": "acme/.github", "deadline_seconds": "acme/app"}


def test_the_file_wins_over_the_api_which_wins_over_the_defaults() -> None:
    api = RepoSettings(warn_only=False, gate_drafts=True, deadline_seconds=600)
    settings, sources = effective(api, {"warn_only": True, "deadline_seconds": 60})
    assert (settings.warn_only, settings.gate_drafts, settings.deadline_seconds) == (True, True, 60)
    assert sources["warn_only"] == sources["deadline_seconds"] == "file"
    assert sources["gate_drafts"] == "api"
    assert sources["exempt_bots"] == "default"
    assert effective(None, None) == (RepoSettings(), {k: "default" for k in FILE_KEYS})


def test_file_logins_never_pair_with_the_api_ids() -> None:
    api = RepoSettings(whitelist_logins=["old"], whitelist_user_ids=[1])
    settings, _ = effective(api, {"whitelist_logins": ["new"], "whitelist_user_ids": [2]})
    assert (settings.whitelist_logins, settings.whitelist_user_ids) == (["new"], [2])


def test_the_docs_fields_table_is_generated_from_the_settings_model() -> None:
    """One source for help texts: RepoSettings' descriptions (the page and the schema read them too)."""
    doc = (SCHEMA.parent / "configuration.md").read_text()
    assert config_fields_table() in doc, (
        "regenerate the table in docs/configuration.md from shared_contracts.repo_config.config_fields_table()")


def test_every_help_text_comes_from_the_settings_model() -> None:
    from backend_api.web.settings import FIELDS

    for spec in FIELDS:
        description = RepoSettings.model_fields[spec.name].description
        assert description
        assert spec.help.startswith(description)
        assert RepoConfigFile.model_fields[spec.name].description.startswith(description)  # type: ignore[union-attr]
