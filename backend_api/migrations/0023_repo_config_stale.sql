-- Repositories whose `.github/prgate.yml` must be read again without a push of their own
-- (docs/configuration.md, "When the file is read"): added to an installation (the file may be
-- there already), or inheriting from a file that was just pushed (an `_extends` target or the
-- organization's `.github`). The worker's config-refresh job asks the backend to read a few at a
-- time (`POST /internal/v2/github/config/refresh`); a read deletes the row, unless it was marked
-- again meanwhile (`marked_at` moved), and a read GitHub could not answer backs off.
CREATE TABLE repo_config_stale (
    repo_id          BIGINT PRIMARY KEY,
    installation_id  BIGINT NOT NULL,
    repo_full_name   TEXT NOT NULL,
    reason           TEXT NOT NULL,
    marked_at        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Due from then on; a claim pushes it a lease ahead, a failed read a backoff ahead.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT
);
CREATE INDEX repo_config_stale_due_idx ON repo_config_stale (next_attempt_at, marked_at);
