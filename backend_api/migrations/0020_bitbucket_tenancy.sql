-- Bitbucket Cloud tenancy (docs/bitbucket.md, "Identifiers"): every workspace, repository and account
-- gets a BIGINT id from one sequence starting at 10^15, so the gate tables keyed by
-- installation_id / repo_id / author_id serve both providers unchanged and an id names one thing
-- across providers. GitHub's ids are about 10^9; 2^53 (JavaScript's exact limit) is about 9 * 10^15.
CREATE SEQUENCE bitbucket_ids AS BIGINT START WITH 1000000000000000 MINVALUE 1000000000000000
    MAXVALUE 9007199254740991;

CREATE TABLE bitbucket_workspaces (
    tenant_id         BIGINT PRIMARY KEY DEFAULT nextval('bitbucket_ids'),
    workspace_uuid    UUID NOT NULL UNIQUE,
    slug              TEXT NOT NULL CHECK (length(slug) BETWEEN 1 AND 255),
    name              TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DISCONNECTED')),
    -- The access token, Fernet-encrypted with the first PRGATE_ENCRYPTION_KEY (never stored in clear).
    token_ciphertext  BYTEA,
    hook_uuid         UUID,
    connected_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    disconnected_at   TIMESTAMPTZ,
    last_discovered_at TIMESTAMPTZ,
    -- The last discovery's or connect's failure, shown on the dashboard (NULL: the last one worked).
    last_error        TEXT,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Workspace slugs are unique on Bitbucket and ignore case in its URLs.
CREATE UNIQUE INDEX bitbucket_workspaces_slug_idx ON bitbucket_workspaces (lower(slug));

CREATE TABLE bitbucket_repositories (
    repo_id      BIGINT PRIMARY KEY DEFAULT nextval('bitbucket_ids'),
    tenant_id    BIGINT NOT NULL REFERENCES bitbucket_workspaces (tenant_id),
    repo_uuid    UUID NOT NULL UNIQUE,
    full_name    TEXT NOT NULL CHECK (full_name ~ '^[^/\s]+/[^/\s]+$'),
    main_branch  TEXT,
    private      BOOLEAN NOT NULL DEFAULT TRUE,
    added_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when a discovery no longer finds it (deleted, or moved out of the workspace).
    removed_at   TIMESTAMPTZ
);
CREATE INDEX bitbucket_repositories_tenant_idx ON bitbucket_repositories (tenant_id) WHERE removed_at IS NULL;
CREATE INDEX bitbucket_repositories_name_idx ON bitbucket_repositories (lower(full_name));

CREATE TABLE bitbucket_accounts (
    user_id       BIGINT PRIMARY KEY DEFAULT nextval('bitbucket_ids'),
    account_uuid  UUID NOT NULL UNIQUE,
    -- The Atlassian account id ("557058:…"); "Sign in with Bitbucket" matches on it.
    account_id    TEXT UNIQUE,
    nickname      TEXT NOT NULL DEFAULT '',
    display_name  TEXT NOT NULL DEFAULT '',
    account_type  TEXT NOT NULL DEFAULT 'user',
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which provider a challenge is on: the verification page offers that provider's sign-in.
ALTER TABLE challenges ADD COLUMN provider TEXT NOT NULL DEFAULT 'github'
    CHECK (provider IN ('github', 'bitbucket'));
