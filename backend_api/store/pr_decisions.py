"""What decisions about pull requests write, for a whole batch in one statement.

Like `pr_context`, it crosses aggregates on purpose (challenges, bot_actions, decided_pull_requests,
webhook_deliveries): the ingest path is bound by round trips to PostgreSQL (docs/benchmarks.md,
ingest profile), and these writes were four statements per delivery. The rarer writes of a plan
(cancel, resolve, exemption, new head, membership) stay in their own aggregates' modules and run
before this one.

Every decision in a batch must be about a different pull request: the actions written are matched
back to their decision by (repo id, PR number).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend_api.store.challenges import NewChallenge
from backend_api.store.db import Conn
from backend_api.store.deliveries import DeliveryRecord
from shared_contracts.actions import ActionType, Provider

WRITE_SQL = """
WITH new_ids AS MATERIALIZED (
    SELECT c.n, nextval(pg_get_serial_sequence('challenges', 'challenge_id')) AS challenge_id
    FROM unnest($1::int[]) AS c(n)
),
created AS (
    INSERT INTO challenges (challenge_id, installation_id, repo_id, repo_full_name, pr_number, pr_id, head_sha,
                            author_id, author_login, status, deadline_at, token_hash, delivery_id, provider)
    SELECT i.challenge_id, c.installation_id, c.repo_id, c.repo_full_name, c.pr_number, c.pr_id, c.head_sha,
           c.author_id, c.author_login, 'PENDING', c.deadline_at, c.token_hash, c.delivery_id, $32
    FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::text[],
                $8::bigint[], $9::text[], $10::timestamptz[], $11::text[], $12::text[])
         AS c(n, installation_id, repo_id, repo_full_name, pr_number, pr_id, head_sha, author_id, author_login,
              deadline_at, token_hash, delivery_id)
    JOIN new_ids i USING (n)
),
actions AS (
    INSERT INTO bot_actions (provider, action_type, installation_id, repo_id, repo_full_name, pr_number, payload,
                             challenge_id, max_attempts)
    SELECT $32, a.action_type, a.installation_id, a.repo_id, a.repo_full_name, a.pr_number, a.payload,
           coalesce(a.challenge_id, i.challenge_id), $13
    FROM unnest($14::int[], $15::text[], $16::jsonb[], $17::bigint[], $18::bigint[], $19::text[], $20::int[],
                $21::bigint[]) WITH ORDINALITY
         AS a(n, action_type, payload, installation_id, repo_id, repo_full_name, pr_number, challenge_id, ord)
    LEFT JOIN new_ids i USING (n)
    ORDER BY a.ord
    RETURNING action_id, repo_id, pr_number
),
decided AS (
    INSERT INTO decided_pull_requests (repo_id, pr_number, installation_id)
    SELECT * FROM unnest($22::bigint[], $23::int[], $24::bigint[])
    ON CONFLICT (repo_id, pr_number) DO UPDATE SET
        installation_id = EXCLUDED.installation_id, last_decided_at = now()
),
outcomes AS (
    UPDATE webhook_deliveries d
    SET status = o.status, decision = o.decision, challenge_id = coalesce(o.challenge_id, i.challenge_id),
        reason = o.reason
    FROM unnest($26::int[], $27::text[], $28::text[], $29::text[], $30::bigint[], $31::text[])
         AS o(n, delivery_id, status, decision, challenge_id, reason)
    LEFT JOIN new_ids i USING (n)
    -- The ANY() repeats the join on purpose: it gives the planner an index path on the primary key
    -- whatever it believes of the table's size (without fresh statistics it hash-joined a seq scan of
    -- the whole dedup table, per batch: found with auto_explain, docs/benchmarks.md).
    WHERE d.provider = $32 AND d.delivery_id = o.delivery_id AND d.event_name = $25
      AND d.delivery_id = ANY($27::text[])
)
SELECT n, challenge_id, NULL::bigint AS action_id, NULL::bigint AS repo_id, NULL::int AS pr_number FROM new_ids
UNION ALL
SELECT NULL, NULL, action_id, repo_id, pr_number FROM actions
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The delivery's row in the dedup table, as the decision leaves it."""

    delivery_id: str
    record: DeliveryRecord  # its challenge_id is filled in when the decision creates one


@dataclass(frozen=True, slots=True)
class DecisionWrite:
    installation_id: int
    repo_id: int
    repo_full_name: str
    pr_number: int
    challenge_id: int | None  # the challenge the decision is about, when it is not `new_challenge`
    new_challenge: NewChallenge | None = None
    actions: Sequence[tuple[ActionType, dict[str, Any]]] = field(default_factory=list)
    mark_decided: bool = False
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Written:
    challenge_id: int | None
    action_ids: list[int]  # ascending, in the order the actions were given: their execution order


async def write(
    conn: Conn,
    decisions: Sequence[DecisionWrite],
    *,
    max_attempts: int,
    outcome_event: str,
    provider: Provider = Provider.GITHUB,
) -> list[Written]:
    """Write every decision's new challenge, actions, decided mark and outcome; one result per decision."""
    prs = {(d.repo_id, d.pr_number): n for n, d in enumerate(decisions)}
    if len(prs) != len(decisions):
        raise ValueError("a batch of decisions must be about distinct pull requests")
    created = [(n, d.new_challenge) for n, d in enumerate(decisions) if d.new_challenge is not None]
    actions = [(n, d, t, p) for n, d in enumerate(decisions) for t, p in d.actions]
    marks = [d for d in decisions if d.mark_decided]
    outcomes = [(n, d.outcome) for n, d in enumerate(decisions) if d.outcome is not None]
    if not (created or actions or marks or outcomes):
        return [Written(d.challenge_id, []) for d in decisions]
    arguments = write_arguments(created, actions, marks, outcomes, max_attempts, outcome_event, provider)
    rows = await conn.fetch(WRITE_SQL, *arguments)
    challenge_ids: dict[int, int] = {}
    action_ids: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        if row["action_id"] is None:
            challenge_ids[int(row["n"])] = int(row["challenge_id"])
        else:
            action_ids[prs[(int(row["repo_id"]), int(row["pr_number"]))]].append(int(row["action_id"]))
    return [
        Written(challenge_ids.get(n, d.challenge_id), sorted(action_ids[n])) for n, d in enumerate(decisions)
    ]


def write_arguments(
    created: Sequence[tuple[int, NewChallenge]],
    actions: Sequence[tuple[int, DecisionWrite, ActionType, dict[str, Any]]],
    marks: Sequence[DecisionWrite],
    outcomes: Sequence[tuple[int, Outcome]],
    max_attempts: int,
    outcome_event: str,
    provider: Provider = Provider.GITHUB,
) -> list[Any]:
    """The statement's parameters, column by column (also what tests EXPLAIN it with)."""
    return [
        [n for n, _ in created], [c.installation_id for _, c in created], [c.repo_id for _, c in created],
        [c.repo_full_name for _, c in created], [c.pr_number for _, c in created], [c.pr_id for _, c in created],
        [c.head_sha for _, c in created], [c.author_id for _, c in created], [c.author_login for _, c in created],
        [c.deadline_at for _, c in created], [c.token_hash for _, c in created], [c.delivery_id for _, c in created],
        max_attempts,
        [n for n, *_ in actions], [t.value for *_, t, _ in actions], [p for *_, p in actions],
        [d.installation_id for _, d, *_ in actions], [d.repo_id for _, d, *_ in actions],
        [d.repo_full_name for _, d, *_ in actions], [d.pr_number for _, d, *_ in actions],
        [d.challenge_id for _, d, *_ in actions],
        [d.repo_id for d in marks], [d.pr_number for d in marks], [d.installation_id for d in marks],
        outcome_event,
        [n for n, _ in outcomes], [o.delivery_id for _, o in outcomes], [o.record.status.value for _, o in outcomes],
        [o.record.decision.value if o.record.decision else None for _, o in outcomes],
        [o.record.challenge_id for _, o in outcomes], [o.record.reason for _, o in outcomes],
        provider.value,
    ]
