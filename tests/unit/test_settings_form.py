"""The settings page's pure parts: what a submitted form means, and how defaults are shown."""

from __future__ import annotations

from backend_api.web.settings import FIELDS, FileState, format_default, parse_form, render_file_banner, render_form
from shared_contracts.actions import Provider
from shared_contracts.owner import RepoSettings


def test_a_form_reads_as_settings_checkboxes_left_out_are_off() -> None:
    values, answer = parse_form(
        {"deadline_seconds": " 600 ", "warn_only": "yes", "whitelist_logins": "@alice, bob\r\ncarol  ,",
         "challenge_text": "Line one\r\nLine two", "challenge_question": "   ", "challenge_answer": "  "},
        ["OWNER", "MEMBER", "OWNER"],
    )
    assert answer is None  # blank: keep the stored answer
    settings = RepoSettings.model_validate(values)
    assert settings.deadline_seconds == 600
    assert (settings.warn_only, settings.gate_drafts, settings.exempt_bots, settings.reopen_on_verify) == (
        True, False, False, False)
    assert settings.whitelist_logins == ["alice", "bob", "carol"]
    assert settings.exempt_associations == ["OWNER", "MEMBER"]
    assert settings.challenge_text == "Line one\nLine two"
    assert settings.challenge_question is None


def test_the_answer_is_set_kept_or_removed() -> None:
    assert parse_form({"challenge_answer": "MIT"}, [])[1] == "MIT"
    assert parse_form({"challenge_answer": ""}, [])[1] is None
    assert parse_form({"challenge_answer": "MIT", "remove_answer": "yes"}, [])[1] == ""


def test_every_settings_field_is_on_the_page_with_its_default() -> None:
    editable = set(RepoSettings.model_fields) - {"whitelist_user_ids"}
    assert {f.name for f in FIELDS} == editable
    html = render_form("/settings/1", "tok", RepoSettings().model_dump(), answer_set=False)
    for spec in FIELDS:
        assert f"name={spec.name}" in html
    assert format_default(FIELDS[0], 72 * 3600) == "259200 s (72 h)"
    assert "Default: OWNER, MEMBER, COLLABORATOR." in html
    # Submitted values are escaped.
    assert "<script>" not in render_form("/s", "t", {"challenge_question": "<script>x"}, answer_set=True)


def test_the_config_file_is_named_where_the_provider_keeps_it() -> None:
    file = FileState(sets={"warn_only": "acme/widgets"}, error="warn_only: not a boolean")
    github = render_file_banner(file) + render_form("/settings/1", "t", {}, False, file=file)
    bitbucket = (render_file_banner(file, Provider.BITBUCKET)
                 + render_form("/settings/2", "t", {}, False, file=file, provider=Provider.BITBUCKET))
    assert ".github/prgate.yml" in github
    assert ".prgate.yml" in bitbucket
    assert ".github/prgate.yml" not in bitbucket
    assert "acme/widgets:.prgate.yml" in bitbucket  # the field's note names the file that set it


def test_a_bitbucket_form_has_no_author_associations_and_says_nicknames() -> None:
    github = render_form("/settings/1", "t", {}, False)
    bitbucket = render_form("/settings/2", "t", {}, False, provider=Provider.BITBUCKET)
    assert "exempt_associations" in github
    assert "GitHub logins never gated" in github
    assert "exempt_associations" not in bitbucket
    assert "Bitbucket nicknames" in bitbucket
    assert "GitHub logins" not in bitbucket
