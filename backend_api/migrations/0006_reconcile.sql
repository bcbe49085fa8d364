-- Reconciliation with GitHub (issue #7, docs/reconcile.md): each run, the repairs it made, and
-- which pull requests prgate has decided about (so a run can tell a PR it never saw).

CREATE TABLE reconcile_runs (
    run_id          BIGSERIAL PRIMARY KEY,
    trigger         TEXT NOT NULL CHECK (trigger IN ('schedule', 'cli')),
    -- NULL: every installation; else the one installation the run was limited to.
    installation_id BIGINT,
    worker_id       TEXT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    repairs         INTEGER NOT NULL DEFAULT 0,
    -- [{installation_id, repo_full_name, message}]: what the run could not do (GitHub errors,
    -- parts deferred to keep the rate-limit reserve). Small, read whole, never queried into.
    errors          JSONB NOT NULL DEFAULT '[]',
    -- {installations, repositories, pull_requests}: what the run looked at.
    stats           JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX reconcile_runs_started_idx ON reconcile_runs (started_at DESC);

CREATE TABLE reconcile_repairs (
    repair_id       BIGSERIAL PRIMARY KEY,
    run_id          BIGINT NOT NULL REFERENCES reconcile_runs (run_id),
    kind            TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    repo_id         BIGINT,
    repo_full_name  TEXT,
    pr_number       INTEGER,
    detail          TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reconcile_repairs_run_idx ON reconcile_repairs (run_id, repair_id);

-- A pull request prgate has evaluated (opened, reopened, ready_for_review, synchronize, recheck)
-- on an installation that accepted it, by webhook or by reconciliation.
CREATE TABLE decided_pull_requests (
    repo_id          BIGINT NOT NULL,
    pr_number        INTEGER NOT NULL,
    installation_id  BIGINT NOT NULL,
    first_decided_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_decided_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, pr_number)
);

-- Pull requests decided before this table existed: every one with a challenge or an action.
INSERT INTO decided_pull_requests (repo_id, pr_number, installation_id, first_decided_at, last_decided_at)
SELECT repo_id, pr_number, min(installation_id), min(created_at), max(created_at)
FROM challenges GROUP BY repo_id, pr_number
ON CONFLICT DO NOTHING;
INSERT INTO decided_pull_requests (repo_id, pr_number, installation_id, first_decided_at, last_decided_at)
SELECT repo_id, pr_number, min(installation_id), min(created_at), max(created_at)
FROM bot_actions WHERE repo_id IS NOT NULL AND provider = 'github' GROUP BY repo_id, pr_number
ON CONFLICT DO NOTHING;
