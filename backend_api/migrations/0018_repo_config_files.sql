-- The repository config file, `.github/prgate.yml` (docs/configuration.md): what was last read for
-- each repository, from its own file, the file it `_extends` and its organization's `.github`.
-- `config` is the last *valid* merged file configuration and stays in force while a newer file is
-- invalid (`last_error` then says why); NULL: no file applies (the owner API's settings alone).
CREATE TABLE repo_config_files (
    repo_id          BIGINT PRIMARY KEY,
    installation_id  BIGINT NOT NULL,
    repo_full_name   TEXT NOT NULL,
    config           JSONB,
    -- Which file set each key of `config` ({"warn_only": "acme/app", …}): what the owner API shows.
    key_sources      JSONB NOT NULL DEFAULT '{}',
    -- Whether the repository has its own file, and the full names of the files merged into `config`
    -- (a push to any of them refreshes this row).
    own_file         BOOLEAN NOT NULL DEFAULT false,
    inherits         TEXT[] NOT NULL DEFAULT '{}',
    blob_sha         TEXT,
    last_error       TEXT,
    last_error_sha   TEXT,
    last_error_at    TIMESTAMPTZ,
    fetched_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX repo_config_files_installation_idx ON repo_config_files (installation_id);
