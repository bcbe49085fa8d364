-- The gate reads its tenant facts through these views, whichever provider a pull request is on
-- (docs/bitbucket.md, "Identifiers"): ids are disjoint across providers, so no provider key is needed.
-- A Bitbucket workspace is always "selected" repositories (prgate knows each one from discovery or
-- from the first event about it); a disconnected one is refused like a deleted installation.
CREATE VIEW gate_tenants AS
    SELECT 'github' AS provider, installation_id AS tenant_id, account_login, status, repository_selection
    FROM github_installations
    UNION ALL
    SELECT 'bitbucket', tenant_id, slug, CASE status WHEN 'ACTIVE' THEN 'ACTIVE' ELSE 'DELETED' END, 'selected'
    FROM bitbucket_workspaces;

CREATE VIEW gate_tenant_repositories AS
    SELECT installation_id AS tenant_id, repo_id, removed_at FROM github_installation_repositories
    UNION ALL
    SELECT tenant_id, repo_id, removed_at FROM bitbucket_repositories;
