-- API tokens for the read APIs (docs/api-tokens.md). Only the SHA-256 of a token is stored: a token
-- is 256 random bits, so a fast hash is enough (no dictionary to guess from; docs/security.md).
-- No foreign keys to the tenants: a token outlives a disconnect or uninstall (it then reads nothing,
-- the scope check is against the repository's current tenant) and never blocks a purge.
CREATE TABLE api_tokens (
    token_id             BIGSERIAL PRIMARY KEY,
    name                 TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scope                TEXT NOT NULL CHECK (scope IN ('operator', 'installation', 'workspace', 'jira_site')),
    installation_id      BIGINT,
    workspace_tenant_id  BIGINT,
    -- Normalized (scheme and host lower-cased, no path): https://acme.atlassian.net
    jira_site            TEXT,
    token_hash           BYTEA NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Updated at most once a minute per token (docs/api-tokens.md).
    last_used_at         TIMESTAMPTZ,
    revoked_at           TIMESTAMPTZ,
    -- Exactly the column of its scope is set.
    CONSTRAINT api_tokens_scope_target CHECK (
        CASE scope
            WHEN 'operator' THEN num_nonnulls(installation_id, workspace_tenant_id, jira_site) = 0
            WHEN 'installation' THEN installation_id IS NOT NULL
                                     AND num_nonnulls(workspace_tenant_id, jira_site) = 0
            WHEN 'workspace' THEN workspace_tenant_id IS NOT NULL
                                  AND num_nonnulls(installation_id, jira_site) = 0
            WHEN 'jira_site' THEN jira_site IS NOT NULL
                                  AND num_nonnulls(installation_id, workspace_tenant_id) = 0
        END
    )
);
-- A name names one live token (revoke NAME); a revoked token's name may be used again.
CREATE UNIQUE INDEX api_tokens_live_name_idx ON api_tokens (lower(name)) WHERE revoked_at IS NULL;
