"""The verification decision: a pure function from challenges, settings, user and form to a plan.

No I/O here. ``backend_api.gate.verification`` locks the challenges, calls
:func:`plan_verification` inside its transaction and writes the plan; the pages call
:func:`page_access` to decide what to show.

What can be verified: a ``PENDING`` challenge, and a ``TIMED_OUT`` one (its PR was closed at the
deadline; verifying afterwards is how it gets reopened). ``VERIFIED`` is final (409), and so are
``CANCELLED`` (PR closed by someone, repository or installation removed) and ``EXEMPTED`` (a
maintainer waived it): their links have expired (409).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from backend_api.challenges import messages
from shared_contracts.actions import ActionType, CommentPayload, Provider, StatusPayload, is_commit_sha
from shared_contracts.owner import RepoSettings

MAX_ANSWER_CHARS = 2000


class ChallengeStatus(StrEnum):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    EXEMPTED = "EXEMPTED"


# Statuses a verification resolves (the link of any other status has expired or was used).
OPEN_STATUSES = frozenset({ChallengeStatus.PENDING, ChallengeStatus.TIMED_OUT})


class Refusal(StrEnum):
    """Why a verification page or submission is refused; each maps to one HTTP status."""

    SIGNED_OUT = "signed_out"
    BAD_CSRF = "bad_csrf"
    WRONG_USER = "wrong_user"
    WRONG_PROVIDER = "wrong_provider"
    ALREADY_VERIFIED = "already_verified"
    EXPIRED = "expired"
    NOT_ACCEPTED = "not_accepted"
    ANSWER_REQUIRED = "answer_required"
    WRONG_ANSWER = "wrong_answer"
    TOO_MANY_WRONG_ANSWERS = "too_many_wrong_answers"

    @property
    def http_status(self) -> int:
        return _REFUSAL_STATUS[self]


_REFUSAL_STATUS = {
    Refusal.SIGNED_OUT: 403,
    Refusal.BAD_CSRF: 403,
    Refusal.WRONG_USER: 403,
    Refusal.WRONG_PROVIDER: 403,
    Refusal.ALREADY_VERIFIED: 409,
    Refusal.EXPIRED: 409,
    Refusal.NOT_ACCEPTED: 422,
    Refusal.ANSWER_REQUIRED: 422,
    Refusal.WRONG_ANSWER: 422,
    Refusal.TOO_MANY_WRONG_ANSWERS: 429,
}


def too_many_wrong_answers(by_challenge: int, by_session: int, limit: int) -> bool:
    """Guessing is bounded per challenge (whoever tries) and per session (whatever it tries)."""
    return by_challenge >= limit or by_session >= limit


@dataclass(frozen=True, slots=True)
class ChallengeInfo:
    challenge_id: int
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    head_sha: str
    author_id: int
    author_login: str
    status: ChallengeStatus
    deadline_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = None
    provider: Provider = Provider.GITHUB


def closed_at_deadline(challenge: ChallengeInfo, settings: RepoSettings) -> bool:
    """Whether the sweeper closed this challenge's pull request: what it recorded at the deadline, so an
    owner turning warn-only on or off since changes nothing about a PR already closed or left open. A row
    without that record (resolved before it was kept) falls back to today's setting."""
    if challenge.status is not ChallengeStatus.TIMED_OUT:
        return False
    if challenge.resolution == messages.RESOLUTION_TIMED_OUT_CLOSED:
        return True
    if challenge.resolution == messages.RESOLUTION_TIMED_OUT_WARNED:
        return False
    return not settings.warn_only


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """Who the provider says is signed in. Compared to the author by id: logins can be renamed."""

    id: int
    login: str
    provider: Provider = Provider.GITHUB


@dataclass(frozen=True, slots=True)
class RepoRules:
    """What a repository asks of its contributors."""

    settings: RepoSettings
    answer_hash: str | None = None  # hash of the expected answer to settings.challenge_question

    @property
    def attestation(self) -> str:
        return self.settings.challenge_text or messages.DEFAULT_CHALLENGE_TEXT

    @property
    def question(self) -> str | None:
        question = self.settings.challenge_question
        return question if question and question.strip() else None


@dataclass(frozen=True, slots=True)
class VerifyForm:
    accept: bool
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedAction:
    challenge_id: int
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    action_type: ActionType
    payload: CommentPayload | StatusPayload
    provider: Provider = Provider.GITHUB


@dataclass(frozen=True, slots=True)
class VerificationPlan:
    user: SignedInUser
    installation_id: int
    challenge_id: int  # the one whose page was used
    resolve: tuple[ChallengeInfo, ...]  # every challenge that becomes VERIFIED, that one first
    actions: tuple[PlannedAction, ...]

    @property
    def resolution(self) -> str:
        """``challenges.resolution`` of the verified challenge."""
        return f"verified by @{self.user.login}"

    @property
    def cascade_resolution(self) -> str:
        """``challenges.resolution`` of the author's other challenges it resolved."""
        return f"verified by @{self.user.login} (challenge {self.challenge_id})"


# ---- answers ------------------------------------------------------------------------------------


def normalize_answer(answer: str) -> str:
    """Case-insensitive, trimmed, runs of whitespace as one space."""
    return " ".join(answer.split()).casefold()


def answer_hash(answer: str) -> str:
    """What ``repo_settings.challenge_answer_hash`` holds: hex SHA-256 of the normalized answer."""
    return hashlib.sha256(normalize_answer(answer).encode()).hexdigest()


def check_answer(rules: RepoRules, answer: str | None) -> Refusal | None:
    if rules.question is None:
        return None
    text = normalize_answer(answer or "")
    if not text:
        return Refusal.ANSWER_REQUIRED
    if len(answer or "") > MAX_ANSWER_CHARS:
        return Refusal.WRONG_ANSWER
    if rules.answer_hash is None:  # a question without a stored answer takes any answer
        return None
    if not hmac.compare_digest(answer_hash(answer or "").encode(), rules.answer_hash.strip().lower().encode()):
        return Refusal.WRONG_ANSWER
    return None


# ---- decisions -------------------------------------------------------------------------------------


def page_access(challenge: ChallengeInfo, user: SignedInUser | None) -> Refusal | None:
    """May ``user`` complete this challenge now? ``None`` means yes."""
    if challenge.status is ChallengeStatus.VERIFIED:
        return Refusal.ALREADY_VERIFIED
    if challenge.status not in OPEN_STATUSES:
        return Refusal.EXPIRED
    if user is None:
        return Refusal.SIGNED_OUT
    # Ids of the two providers never meet (docs/bitbucket.md), but which provider vouched for the user
    # is checked on its own: only the challenge's provider can say who opened its pull request.
    if user.provider is not challenge.provider:
        return Refusal.WRONG_PROVIDER
    if user.id != challenge.author_id:
        return Refusal.WRONG_USER
    return None


def plan_verification(
    target: ChallengeInfo,
    rules: RepoRules,
    others: Sequence[ChallengeInfo],
    settings_by_repo: Mapping[int, RepoSettings],
    user: SignedInUser | None,
    form: VerifyForm,
    verify_url: str,
) -> Refusal | VerificationPlan:
    """Verify ``target`` and every other open challenge of its author in its installation.

    ``others`` may include challenges that are not open or not the author's; they are skipped.
    Actions are planned per pull request (a PR can hold a TIMED_OUT challenge and, once reopened,
    a PENDING one): one comment — a reopen when every challenge of that PR timed out, the repo
    has ``reopen_on_verify`` and is not warn-only (warn-only never closed it) — and one success
    status on the newest challenge's head commit.
    """
    refusal = page_access(target, user)
    if refusal is not None:
        return refusal
    assert user is not None
    if not form.accept:
        return Refusal.NOT_ACCEPTED
    refusal = check_answer(rules, form.answer)
    if refusal is not None:
        return refusal

    also = sorted(
        (
            c for c in others
            if c.challenge_id != target.challenge_id
            and c.installation_id == target.installation_id
            and c.author_id == target.author_id
            and c.status in OPEN_STATUSES
        ),
        key=lambda c: c.challenge_id,
    )
    resolve = [target, *also]
    by_pr: dict[tuple[int, int], list[ChallengeInfo]] = {}
    for challenge in resolve:
        by_pr.setdefault((challenge.repo_id, challenge.pr_number), []).append(challenge)

    comment = CommentPayload(marker=messages.PR_COMMENT_MARKER, body=messages.verified_comment(user.login))
    actions: list[PlannedAction] = []
    for (repo_id, _), group in by_pr.items():
        newest = max(group, key=lambda c: c.challenge_id)
        settings = rules.settings if repo_id == target.repo_id else settings_by_repo.get(repo_id, RepoSettings())
        closed_by_timeout = all(closed_at_deadline(c, settings) for c in group)
        reopen = closed_by_timeout and settings.reopen_on_verify
        if reopen and newest.provider is Provider.BITBUCKET:
            # Bitbucket cannot reopen a declined pull request: say how to go on instead.
            actions.append(_action(newest, ActionType.UPSERT_PR_COMMENT, CommentPayload(
                marker=messages.PR_COMMENT_MARKER, body=messages.verified_after_decline_comment(user.login))))
        else:
            actions.append(_action(
                newest, ActionType.REOPEN_PR_WITH_COMMENT if reopen else ActionType.UPSERT_PR_COMMENT, comment
            ))
        sha = newest.head_sha.strip().lower()
        if is_commit_sha(sha):
            status = StatusPayload(
                sha=sha, state="success", description=messages.STATUS_VERIFIED, target_url=verify_url
            )
            actions.append(_action(newest, ActionType.SET_COMMIT_STATUS, status))
    return VerificationPlan(
        user=user, installation_id=target.installation_id, challenge_id=target.challenge_id,
        resolve=tuple(resolve), actions=tuple(actions),
    )


def _action(
    challenge: ChallengeInfo, action_type: ActionType, payload: CommentPayload | StatusPayload
) -> PlannedAction:
    return PlannedAction(
        challenge_id=challenge.challenge_id, installation_id=challenge.installation_id, repo_id=challenge.repo_id,
        repo_full_name=challenge.repo_full_name, pr_number=challenge.pr_number, action_type=action_type,
        payload=payload, provider=challenge.provider,
    )
