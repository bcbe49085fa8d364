-- The owner API and the settings page address a repository by `owner/repo` as well as by id
-- (store.installations.repo_id_by_name); GitHub's names ignore case, hence lower().
CREATE INDEX github_installation_repositories_name_idx
    ON github_installation_repositories (lower(full_name));
