-- Issue 13, items 7 and 14 (docs/security.md).

-- Whitelisted authors by GitHub user id: a login can be renamed and then registered by someone else,
-- an id cannot. `whitelist_logins` stays for display, resolved to these ids when the settings are
-- written; a row written before this migration has logins and no ids, and exempts nobody until its
-- settings are saved again.
ALTER TABLE repo_settings ADD COLUMN whitelist_user_ids BIGINT[] NOT NULL DEFAULT '{}';

-- Session deny list (item 14). Sessions are signed cookies, valid until they expire; these rows
-- refuse them earlier: one session by its id (sign-out, or an operator), or every session of a
-- GitHub user issued up to a moment (an operator). Rows of sessions past their expiry are useless
-- and are deleted as new ones are written.
CREATE TABLE revoked_sessions (
    session_id  TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);

CREATE TABLE revoked_user_sessions (
    github_user_id  BIGINT PRIMARY KEY,
    revoked_before  TIMESTAMPTZ NOT NULL
);

-- Wrong answers on the verification page (item 14), counted per challenge and per session over a
-- sliding window, here so that the limit holds across backend replicas. Rows older than a window
-- are deleted as new ones are written.
CREATE TABLE verify_wrong_answers (
    id              BIGSERIAL PRIMARY KEY,
    challenge_id    BIGINT NOT NULL,
    session_id      TEXT NOT NULL,
    github_user_id  BIGINT NOT NULL,
    failed_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX verify_wrong_answers_challenge ON verify_wrong_answers (challenge_id, failed_at);
CREATE INDEX verify_wrong_answers_session ON verify_wrong_answers (session_id, failed_at);
CREATE INDEX verify_wrong_answers_failed_at ON verify_wrong_answers (failed_at);
