"""The pure parts of verification: the plan, answers, sessions, CSRF, OAuth state, `next` paths."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from backend_api.auth.session import SessionCodec, session_secret
from backend_api.challenges import messages
from backend_api.challenges.verify import (
    ChallengeInfo,
    ChallengeStatus,
    Refusal,
    RepoRules,
    SignedInUser,
    VerificationPlan,
    VerifyForm,
    answer_hash,
    page_access,
    plan_verification,
)
from backend_api.settings import BackendSettings
from backend_api.web.auth import safe_next
from shared_contracts.actions import ActionType, CommentPayload, Provider, StatusPayload
from shared_contracts.owner import RepoSettings

SHA = "0123456789abcdef0123456789abcdef01234567"
URL = "https://prgate.example/verify/tok"
AUTHOR = SignedInUser(id=9001, login="newcomer")
T0 = 1_700_000_000.0


def challenge(
    challenge_id: int = 1,
    *,
    status: ChallengeStatus = ChallengeStatus.PENDING,
    repo_id: int = 5001,
    pr_number: int = 7,
    author_id: int = 9001,
    installation_id: int = 1001,
    head_sha: str = SHA,
    provider: Provider = Provider.GITHUB,
) -> ChallengeInfo:
    return ChallengeInfo(
        challenge_id=challenge_id, installation_id=installation_id, repo_id=repo_id,
        repo_full_name=f"octo-org/r{repo_id}", pr_number=pr_number, head_sha=head_sha, author_id=author_id,
        author_login="newcomer", status=status, deadline_at=datetime(2030, 1, 1, tzinfo=UTC), provider=provider,
    )


def plan(
    target: ChallengeInfo,
    *,
    rules: RepoRules | None = None,
    others: list[ChallengeInfo] | None = None,
    settings: dict[int, RepoSettings] | None = None,
    user: SignedInUser | None = AUTHOR,
    form: VerifyForm | None = None,
) -> VerificationPlan | Refusal:
    return plan_verification(
        target, rules or RepoRules(RepoSettings()), others or [], settings or {}, user,
        form or VerifyForm(accept=True), URL,
    )


def ok(result: VerificationPlan | Refusal) -> VerificationPlan:
    assert isinstance(result, VerificationPlan), result
    return result


# ---- the plan ---------------------------------------------------------------------------------------


def test_pending_challenge_gets_verified_comment_and_success_status() -> None:
    p = ok(plan(challenge()))
    assert [c.challenge_id for c in p.resolve] == [1]
    comment, status = p.actions
    assert comment.action_type is ActionType.UPSERT_PR_COMMENT
    assert comment.payload == CommentPayload(
        marker=messages.PR_COMMENT_MARKER, body=messages.verified_comment("newcomer")
    )
    assert status.action_type is ActionType.SET_COMMIT_STATUS
    assert status.payload == StatusPayload(
        sha=SHA, state="success", description=messages.STATUS_VERIFIED, target_url=URL
    )
    assert (comment.repo_full_name, comment.pr_number, comment.challenge_id) == ("octo-org/r5001", 7, 1)
    assert p.resolution == "verified by @newcomer"


@pytest.mark.parametrize("sha", ["", "abc", "Z" * 40, SHA + "0"])
def test_no_status_without_a_40_hex_head(sha: str) -> None:
    p = ok(plan(challenge(head_sha=sha)))
    assert p.actions[0].action_type is ActionType.UPSERT_PR_COMMENT
    assert ActionType.REOPEN_PR_WITH_COMMENT not in {a.action_type for a in p.actions}


def test_uppercase_sha_is_normalized() -> None:
    p = ok(plan(challenge(head_sha=SHA.upper())))
    assert isinstance(p.actions[1].payload, StatusPayload)
    assert p.actions[1].payload.sha == SHA


@pytest.mark.parametrize(
    ("reopen_on_verify", "warn_only", "expected"),
    [
        (True, False, ActionType.REOPEN_PR_WITH_COMMENT),
        (False, False, ActionType.UPSERT_PR_COMMENT),
        (True, True, ActionType.UPSERT_PR_COMMENT),  # warn-only never closed it
    ],
)
def test_timed_out_challenge_reopens_only_when_the_repo_wants_it(
    reopen_on_verify: bool, warn_only: bool, expected: ActionType
) -> None:
    rules = RepoRules(RepoSettings(reopen_on_verify=reopen_on_verify, warn_only=warn_only))
    p = ok(plan(challenge(status=ChallengeStatus.TIMED_OUT), rules=rules))
    assert p.actions[0].action_type is expected
    assert p.actions[0].payload == CommentPayload(
        marker=messages.PR_COMMENT_MARKER, body=messages.verified_comment("newcomer")
    )


@pytest.mark.parametrize(
    ("resolution", "warn_only_now", "expected"),
    [
        # Closed at the deadline, warn-only turned on since: the PR is still closed, reopen it.
        (messages.RESOLUTION_TIMED_OUT_CLOSED, True, ActionType.REOPEN_PR_WITH_COMMENT),
        # Left open in warn-only mode, warn-only turned off since: nothing to reopen.
        (messages.RESOLUTION_TIMED_OUT_WARNED, False, ActionType.UPSERT_PR_COMMENT),
        # No record of the deadline (an older row): today's setting decides.
        (None, False, ActionType.REOPEN_PR_WITH_COMMENT),
        (None, True, ActionType.UPSERT_PR_COMMENT),
    ],
)
def test_reopening_follows_what_happened_at_the_deadline_not_todays_setting(
    resolution: str | None, warn_only_now: bool, expected: ActionType
) -> None:
    rules = RepoRules(RepoSettings(reopen_on_verify=True, warn_only=warn_only_now))
    timed_out = dataclasses.replace(challenge(status=ChallengeStatus.TIMED_OUT), resolution=resolution)
    p = ok(plan(timed_out, rules=rules))
    assert p.actions[0].action_type is expected


def test_every_open_challenge_of_the_author_in_the_installation_is_resolved() -> None:
    others = [
        challenge(2, repo_id=5002, pr_number=1, status=ChallengeStatus.TIMED_OUT),
        challenge(3, pr_number=8),
        challenge(4, pr_number=9, status=ChallengeStatus.VERIFIED),  # not open
        challenge(5, pr_number=10, status=ChallengeStatus.CANCELLED),  # expired
        challenge(6, pr_number=11, author_id=1),  # someone else
        challenge(7, pr_number=12, installation_id=2002),  # another installation
    ]
    settings = {5002: RepoSettings(reopen_on_verify=True)}
    p = ok(plan(challenge(), others=others, settings=settings))
    assert [c.challenge_id for c in p.resolve] == [1, 2, 3]
    kinds = [(a.challenge_id, a.action_type) for a in p.actions]
    assert kinds == [
        (1, ActionType.UPSERT_PR_COMMENT), (1, ActionType.SET_COMMIT_STATUS),
        (2, ActionType.REOPEN_PR_WITH_COMMENT), (2, ActionType.SET_COMMIT_STATUS),
        (3, ActionType.UPSERT_PR_COMMENT), (3, ActionType.SET_COMMIT_STATUS),
    ]
    assert p.cascade_resolution == "verified by @newcomer (challenge 1)"


def test_other_repos_use_their_own_settings() -> None:
    others = [challenge(2, repo_id=5002, status=ChallengeStatus.TIMED_OUT)]
    p = ok(plan(challenge(), others=others, settings={5002: RepoSettings(reopen_on_verify=False)}))
    assert next(a.action_type for a in p.actions if a.challenge_id == 2) is ActionType.UPSERT_PR_COMMENT


def test_one_pull_request_with_two_challenges_gets_one_set_of_actions() -> None:
    # Timed out, then reopened by its author and gated again: both challenges resolve, one comment.
    old = challenge(1, status=ChallengeStatus.TIMED_OUT, head_sha="1" * 40)
    new = challenge(2, head_sha="2" * 40)
    p = ok(plan(old, others=[new]))
    assert [c.challenge_id for c in p.resolve] == [1, 2]
    comment, status = p.actions
    assert comment.action_type is ActionType.UPSERT_PR_COMMENT  # the PR is open again: no reopen
    assert comment.challenge_id == 2
    assert isinstance(status.payload, StatusPayload)
    assert status.payload.sha == "2" * 40  # the newest head


@pytest.mark.parametrize(
    ("status", "user", "refusal"),
    [
        (ChallengeStatus.VERIFIED, AUTHOR, Refusal.ALREADY_VERIFIED),
        (ChallengeStatus.CANCELLED, AUTHOR, Refusal.EXPIRED),
        (ChallengeStatus.EXEMPTED, AUTHOR, Refusal.EXPIRED),
        (ChallengeStatus.PENDING, None, Refusal.SIGNED_OUT),
        (ChallengeStatus.PENDING, SignedInUser(id=1, login="newcomer"), Refusal.WRONG_USER),  # same login, other id
        (ChallengeStatus.TIMED_OUT, SignedInUser(id=1, login="intruder"), Refusal.WRONG_USER),
        (ChallengeStatus.VERIFIED, SignedInUser(id=1, login="intruder"), Refusal.ALREADY_VERIFIED),
    ],
)
def test_refusals(status: ChallengeStatus, user: SignedInUser | None, refusal: Refusal) -> None:
    assert page_access(challenge(status=status), user) is refusal
    assert plan(challenge(status=status), user=user) is refusal


@pytest.mark.parametrize(("on", "signed_with"), [(Provider.BITBUCKET, Provider.GITHUB),
                                                  (Provider.GITHUB, Provider.BITBUCKET)])
def test_a_session_of_the_other_provider_never_verifies(on: Provider, signed_with: Provider) -> None:
    # Even with the author's very id (ids never meet across providers, but the plan does not rely on it).
    user = SignedInUser(id=9001, login="newcomer", provider=signed_with)
    assert page_access(challenge(provider=on), user) is Refusal.WRONG_PROVIDER
    assert plan(challenge(provider=on), user=user) is Refusal.WRONG_PROVIDER
    # Already verified or expired is still said as such, whoever asks.
    assert page_access(challenge(provider=on, status=ChallengeStatus.VERIFIED), user) is Refusal.ALREADY_VERIFIED


def test_a_bitbucket_author_verifies_with_a_bitbucket_session_and_the_actions_go_to_bitbucket() -> None:
    author = SignedInUser(id=10**15 + 3, login="newcomer", provider=Provider.BITBUCKET)
    target = challenge(author_id=author.id, provider=Provider.BITBUCKET, head_sha="abcdef012345")
    p = ok(plan(target, user=author))
    assert [(a.action_type, a.provider) for a in p.actions] == [
        (ActionType.UPSERT_PR_COMMENT, Provider.BITBUCKET), (ActionType.SET_COMMIT_STATUS, Provider.BITBUCKET),
    ]
    status = p.actions[1].payload
    assert isinstance(status, StatusPayload)
    assert (status.sha, status.state) == ("abcdef012345", "success")
    other = SignedInUser(id=10**15 + 4, login="newcomer", provider=Provider.BITBUCKET)
    assert plan(target, user=other) is Refusal.WRONG_USER


def test_renamed_author_is_still_the_author() -> None:
    renamed = SignedInUser(id=9001, login="new-name")
    assert page_access(challenge(), renamed) is None
    p = ok(plan(challenge(), user=renamed))
    assert p.actions[0].payload == CommentPayload(
        marker=messages.PR_COMMENT_MARKER, body=messages.verified_comment("new-name")
    )


def test_refusal_statuses() -> None:
    assert {r: r.http_status for r in Refusal} == {
        Refusal.SIGNED_OUT: 403, Refusal.BAD_CSRF: 403, Refusal.WRONG_USER: 403, Refusal.WRONG_PROVIDER: 403,
        Refusal.ALREADY_VERIFIED: 409, Refusal.EXPIRED: 409,
        Refusal.NOT_ACCEPTED: 422, Refusal.ANSWER_REQUIRED: 422, Refusal.WRONG_ANSWER: 422,
        Refusal.TOO_MANY_WRONG_ANSWERS: 429,
    }


def test_too_many_wrong_answers_per_challenge_or_per_session() -> None:
    from backend_api.challenges.verify import too_many_wrong_answers

    assert not too_many_wrong_answers(4, 4, 5)
    assert too_many_wrong_answers(5, 0, 5)
    assert too_many_wrong_answers(0, 5, 5)


def test_attestation_must_be_accepted() -> None:
    assert plan(challenge(), form=VerifyForm(accept=False)) is Refusal.NOT_ACCEPTED


# ---- the question -------------------------------------------------------------------------------------

QUESTION = RepoRules(RepoSettings(challenge_question="Which license?"), answer_hash=answer_hash("MIT License"))


@pytest.mark.parametrize("answer", ["MIT License", "  mit license ", "MIT\tLICENSE", "mit   license"])
def test_right_answer_is_case_and_space_insensitive(answer: str) -> None:
    ok(plan(challenge(), rules=QUESTION, form=VerifyForm(accept=True, answer=answer)))


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [(None, Refusal.ANSWER_REQUIRED), ("   ", Refusal.ANSWER_REQUIRED), ("GPL", Refusal.WRONG_ANSWER),
     ("MIT License" + " " * 3000, Refusal.WRONG_ANSWER)],
)
def test_wrong_or_missing_answer(answer: str | None, refusal: Refusal) -> None:
    assert plan(challenge(), rules=QUESTION, form=VerifyForm(accept=True, answer=answer)) is refusal


def test_question_without_stored_answer_takes_any_answer() -> None:
    rules = RepoRules(RepoSettings(challenge_question="What will you work on?"))
    ok(plan(challenge(), rules=rules, form=VerifyForm(accept=True, answer="docs")))
    assert plan(challenge(), rules=rules, form=VerifyForm(accept=True, answer="")) is Refusal.ANSWER_REQUIRED


def test_no_question_ignores_the_answer() -> None:
    ok(plan(challenge(), rules=RepoRules(RepoSettings(), answer_hash=answer_hash("x"))))


def test_attestation_text_defaults() -> None:
    assert RepoRules(RepoSettings()).attestation == messages.DEFAULT_CHALLENGE_TEXT
    assert RepoRules(RepoSettings(challenge_text="I agree to the CLA")).attestation == "I agree to the CLA"
    assert RepoRules(RepoSettings(challenge_question="  ")).question is None


def test_answer_hash_is_sha256_of_the_normalized_answer() -> None:
    import hashlib

    assert answer_hash(" MIT  License ") == hashlib.sha256(b"mit license").hexdigest()


# ---- sessions ----------------------------------------------------------------------------------------

CODEC = SessionCodec(b"k" * 32, secure=False)


def test_session_round_trip_and_expiry() -> None:
    session, cookie = CODEC.issue(9001, "newcomer", T0)
    assert CODEC.read(cookie, T0 + 10) == session
    assert (session.user_id, session.login) == (9001, "newcomer")
    assert CODEC.read(cookie, session.expires_at) is None
    assert "gho_" not in cookie


def test_each_sign_in_gets_a_new_session_id() -> None:
    a, _ = CODEC.issue(9001, "newcomer", T0)
    b, _ = CODEC.issue(9001, "newcomer", T0)
    assert a.sid != b.sid


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_tampered_or_foreign_cookie_reads_as_signed_out() -> None:
    _, cookie = CODEC.issue(9001, "newcomer", T0)
    version, payload, mac = cookie.split(".")
    assert CODEC.read(_flip(cookie, len(version) + 3), T0) is None  # payload changed
    assert CODEC.read(_flip(cookie, len(cookie) - 3), T0) is None  # mac changed
    assert CODEC.read(f"{version}.{payload}", T0) is None
    assert CODEC.read(f"v2.{payload}.{mac}", T0) is None
    assert CODEC.read("", T0) is None
    assert CODEC.read(None, T0) is None
    assert CODEC.read("x" * 5000, T0) is None
    assert SessionCodec(b"other" * 8, secure=False).read(cookie, T0) is None


def test_a_state_cookie_is_not_a_session_cookie() -> None:
    _, state_cookie = CODEC.new_oauth_state("/verify/x", T0)
    assert CODEC.read(state_cookie, T0) is None
    _, session_cookie = CODEC.issue(9001, "newcomer", T0)
    assert CODEC.read_oauth_state(session_cookie, T0) is None


def test_oauth_state_round_trip_and_expiry() -> None:
    state, cookie = CODEC.new_oauth_state("/verify/x", T0)
    read = CODEC.read_oauth_state(cookie, T0 + 1)
    assert read == state
    assert SessionCodec.state_matches(state, state.state)
    assert not SessionCodec.state_matches(state, state.state + "x")
    assert CODEC.read_oauth_state(cookie, T0 + 601) is None


def test_a_session_names_its_provider_and_an_older_cookie_is_githubs() -> None:
    session, cookie = CODEC.issue(10**15 + 1, "bb-user", T0, provider=Provider.BITBUCKET)
    assert CODEC.read(cookie, T0) == session
    assert session.provider is Provider.BITBUCKET
    # A cookie written before sessions named a provider: GitHub's (the only one there was).
    old = CODEC._seal("session", {"sid": "s", "uid": 9001, "login": "newcomer", "exp": int(T0) + 60})
    read = CODEC.read(old, T0)
    assert read is not None
    assert read.provider is Provider.GITHUB
    unknown = CODEC._seal("session", {"sid": "s", "uid": 9001, "login": "newcomer", "exp": int(T0) + 60,
                                      "prov": "gitlab"})
    assert CODEC.read(unknown, T0) is None


def test_an_oauth_state_serves_only_the_provider_it_was_made_for() -> None:
    state, cookie = CODEC.new_oauth_state("/verify/x", T0, provider=Provider.BITBUCKET)
    assert CODEC.read_oauth_state(cookie, T0, Provider.BITBUCKET) == state
    assert CODEC.read_oauth_state(cookie, T0, Provider.GITHUB) is None
    _, github_cookie = CODEC.new_oauth_state("/verify/x", T0)
    assert CODEC.read_oauth_state(github_cookie, T0, Provider.BITBUCKET) is None


def test_csrf_token_is_bound_to_session_and_scope() -> None:
    session, _ = CODEC.issue(9001, "newcomer", T0)
    other, _ = CODEC.issue(9001, "newcomer", T0)
    token = CODEC.csrf_token(session, "verify:1")
    assert CODEC.check_csrf(session, "verify:1", token)
    assert not CODEC.check_csrf(session, "verify:2", token)
    assert not CODEC.check_csrf(other, "verify:1", token)
    assert not CODEC.check_csrf(None, "verify:1", token)
    assert not CODEC.check_csrf(session, "verify:1", "")
    assert not CODEC.check_csrf(session, "verify:1", None)
    forged = dataclasses.replace(session, user_id=1)
    assert not CODEC.check_csrf(forged, "verify:1", token)


def _settings(**env: str) -> BackendSettings:
    return BackendSettings.model_validate({"PRGATE_WORKER_SECRETS": "first,second", "SESSION_SECRET": "s" * 8, **env})


def test_session_secret_is_never_derived_from_an_internal_key() -> None:
    assert session_secret(_settings(SESSION_SECRET="explicit")) == b"explicit"
    with pytest.raises(ValueError, match="SESSION_SECRET must be set"):
        session_secret(BackendSettings.model_validate({"PRGATE_WORKER_SECRETS": "first,second"}))


def test_cookies_are_secure_behind_https() -> None:
    assert SessionCodec.from_settings(_settings(BACKEND_PUBLIC_URL="https://prgate.example")).secure
    assert not SessionCodec.from_settings(_settings(BACKEND_PUBLIC_URL="http://127.0.0.1:8080")).secure


# ---- next -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["/verify/abc", "/verify/abc?x=1", "/"])
def test_relative_next_is_kept(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "https://evil.example", "//evil.example", "/\\evil.example", "\\\\evil.example", "evil.example",
     "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1", "/" + "a" * 3000, "http:/evil.example"],
)
def test_anything_that_could_leave_the_site_is_dropped(value: str | None) -> None:
    assert safe_next(value) is None


def test_a_declined_bitbucket_pull_request_is_never_reopened_but_told_how_to_go_on() -> None:
    """Bitbucket cannot reopen a declined pull request (docs/bitbucket.md): the comment says so."""
    user = SignedInUser(id=9001, login="newcomer", provider=Provider.BITBUCKET)
    p = ok(plan(challenge(status=ChallengeStatus.TIMED_OUT, provider=Provider.BITBUCKET), user=user))
    assert p.actions[0].action_type is ActionType.UPSERT_PR_COMMENT
    assert ActionType.REOPEN_PR_WITH_COMMENT not in {a.action_type for a in p.actions}
    assert all(a.provider is Provider.BITBUCKET for a in p.actions)
    assert p.actions[0].payload == CommentPayload(
        marker=messages.PR_COMMENT_MARKER, body=messages.verified_after_decline_comment("newcomer")
    )
    assert "open it again" in messages.timed_out_comment("newcomer", URL, False, can_reopen=False)
