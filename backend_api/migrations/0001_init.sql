-- prgate initial schema (BA-1). Never edit after merge: add a new numbered file.

CREATE TABLE github_installations (
    installation_id      BIGINT PRIMARY KEY,
    account_id           BIGINT NOT NULL,
    account_login        TEXT NOT NULL,
    account_type         TEXT NOT NULL,
    repository_selection TEXT NOT NULL CHECK (repository_selection IN ('selected', 'all')),
    status               TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'DELETED')),
    installed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    suspended_at         TIMESTAMPTZ,
    unsuspended_at       TIMESTAMPTZ,
    deleted_at           TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Membership is the source of truth for a repository's install status.
-- removed_at IS NULL means the repository is currently part of the installation.
CREATE TABLE github_installation_repositories (
    installation_id BIGINT NOT NULL REFERENCES github_installations (installation_id),
    repo_id         BIGINT NOT NULL,
    full_name       TEXT NOT NULL,
    private         BOOLEAN NOT NULL DEFAULT false,
    added_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    removed_at      TIMESTAMPTZ,
    PRIMARY KEY (installation_id, repo_id)
);
CREATE INDEX github_installation_repositories_repo_idx
    ON github_installation_repositories (repo_id, added_at DESC);

-- Durable webhook dedup: the only correctness mechanism for duplicate deliveries.
CREATE TABLE webhook_deliveries (
    delivery_id     TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    action          TEXT NOT NULL,
    installation_id BIGINT,
    repo_id         BIGINT,
    status          TEXT NOT NULL CHECK (status IN ('ACCEPTED', 'IGNORED')),
    decision        TEXT,
    challenge_id    BIGINT,
    reason          TEXT,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, event_name)
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at DESC);

CREATE TABLE repo_settings (
    repo_id                BIGINT PRIMARY KEY,
    gate_drafts            BOOLEAN NOT NULL DEFAULT false,
    deadline_seconds       INTEGER NOT NULL DEFAULT 259200 CHECK (deadline_seconds > 0),
    warn_only              BOOLEAN NOT NULL DEFAULT false,
    exempt_comment         BOOLEAN NOT NULL DEFAULT true,
    exempt_bots            BOOLEAN NOT NULL DEFAULT true,
    whitelist_logins       TEXT[] NOT NULL DEFAULT '{}',
    exempt_associations    TEXT[] NOT NULL DEFAULT '{OWNER,MEMBER,COLLABORATOR}',
    challenge_text         TEXT,
    challenge_question     TEXT,
    challenge_answer_hash  TEXT,
    reopen_on_verify       BOOLEAN NOT NULL DEFAULT true,
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Authors verified per installation: later PRs by them are VERIFIED_NOOP.
CREATE TABLE contributors (
    installation_id BIGINT NOT NULL,
    github_user_id  BIGINT NOT NULL,
    login           TEXT NOT NULL,
    verified_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    challenge_id    BIGINT,
    PRIMARY KEY (installation_id, github_user_id)
);

CREATE TABLE challenges (
    challenge_id    BIGSERIAL PRIMARY KEY,
    installation_id BIGINT NOT NULL,
    repo_id         BIGINT NOT NULL,
    repo_full_name  TEXT NOT NULL,
    pr_number       INTEGER NOT NULL,
    pr_id           BIGINT NOT NULL,
    head_sha        TEXT NOT NULL DEFAULT '',
    author_id       BIGINT NOT NULL,
    author_login    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'VERIFIED', 'TIMED_OUT', 'CANCELLED', 'EXEMPTED')),
    deadline_at     TIMESTAMPTZ NOT NULL,
    -- Only a hash of the verification link token is stored.
    token_hash      TEXT,
    delivery_id     TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    resolution      TEXT
);
-- At most one PENDING challenge per pull request, enforced by the database.
CREATE UNIQUE INDEX challenges_one_pending_per_pr
    ON challenges (repo_id, pr_number) WHERE status = 'PENDING';
CREATE INDEX challenges_pending_deadline_idx
    ON challenges (deadline_at) WHERE status = 'PENDING';
CREATE INDEX challenges_repo_idx ON challenges (repo_id, created_at DESC);

-- The transactional outbox: every side effect on a provider is one row here,
-- written in the same transaction as the decision that caused it.
CREATE TABLE bot_actions (
    action_id        BIGSERIAL PRIMARY KEY,
    provider         TEXT NOT NULL CHECK (provider IN ('github', 'bitbucket')),
    action_type      TEXT NOT NULL CHECK (action_type IN ('UPSERT_PR_COMMENT', 'CLOSE_PR_WITH_COMMENT')),
    status           TEXT NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'CLAIMED', 'DONE', 'FAILED', 'CANCELLED')),
    installation_id  BIGINT NOT NULL,
    repo_id          BIGINT,
    repo_full_name   TEXT NOT NULL,
    pr_number        INTEGER NOT NULL,
    payload          JSONB NOT NULL,
    challenge_id     BIGINT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
    -- When the row is next claimable: for PENDING the backoff time, for CLAIMED
    -- the lease expiry (an expired lease is claimable again). One column keeps
    -- the claim a single range scan over one partial index.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ
);
CREATE INDEX bot_actions_claimable_idx
    ON bot_actions (next_attempt_at, action_id) WHERE status IN ('PENDING', 'CLAIMED');
-- Per-PR ordering: is there an earlier unfinished action for the same PR?
CREATE INDEX bot_actions_open_per_pr_idx
    ON bot_actions (provider, repo_full_name, pr_number, action_id) WHERE status IN ('PENDING', 'CLAIMED');
CREATE INDEX bot_actions_repo_idx ON bot_actions (repo_full_name, action_id DESC);
CREATE INDEX bot_actions_installation_open_idx
    ON bot_actions (installation_id) WHERE status IN ('PENDING', 'CLAIMED');

-- Replay protection for signed internal requests. UNLOGGED: a nonce only has to
-- outlive the 300 s signature window, so WAL-logging it buys nothing but latency.
CREATE UNLOGGED TABLE internal_nonces (
    nonce   TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX internal_nonces_seen_idx ON internal_nonces (seen_at);

-- Wake long-polling claimers the moment an action becomes claimable.
CREATE FUNCTION bot_actions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('prgate_bot_actions', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER bot_actions_notify_insert
    AFTER INSERT ON bot_actions
    FOR EACH STATEMENT EXECUTE FUNCTION bot_actions_notify();
