-- One-time setup claims for the manifest flow (docs/github-app.md, docs/security.md):
-- `prgate github-app create` registers the random claim it prints (signed with an admin key)
-- before the browser may start a registration under it; the callback consumes it.
CREATE TABLE github_app_setup_claims (
    claim_hash TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Stored credentials are now handed out once, to the claim they were created under, and deleted
-- then. Rows without a claim can never be fetched again, and rows older than a registration's
-- hour were fetched already (or never will be): neither should keep an App's private key.
DELETE FROM github_app_credentials WHERE claim_hash IS NULL OR created_at < now() - interval '1 hour';
