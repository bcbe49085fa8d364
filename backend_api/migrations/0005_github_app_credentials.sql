-- GitHub Apps registered through the manifest flow (docs/github-app.md): what GitHub answered to
-- POST /app-manifests/{code}/conversions. Read back only by the signed internal API, for
-- `prgate github-app create` to write its env file. claim_hash: sha256 (hex) of the random claim
-- the CLI put in the URL it printed, so the CLI picks up the App its user created and no other.
CREATE TABLE github_app_credentials (
    app_id          BIGINT PRIMARY KEY,
    slug            TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT NOT NULL,
    webhook_secret  TEXT,
    private_key_pem TEXT NOT NULL CHECK (length(private_key_pem) BETWEEN 1 AND 16384),
    owner_login     TEXT NOT NULL,
    html_url        TEXT NOT NULL,
    claim_hash      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX github_app_credentials_created_idx ON github_app_credentials (created_at DESC);
CREATE INDEX github_app_credentials_claim_idx ON github_app_credentials (claim_hash) WHERE claim_hash IS NOT NULL;
