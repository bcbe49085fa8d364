-- Actions are carried out and ordered by repository id, never by name (issue 13, item 3): a
-- repository can be renamed and a new one created under the old name; an action keyed by name
-- would then land on the newcomer's pull request of the same number.

-- Rows written before repo_id was always set: take the id from the action's challenge, else from
-- the installation's membership when exactly one repository ever had that name there.
UPDATE bot_actions a SET repo_id = c.repo_id
FROM challenges c
WHERE a.repo_id IS NULL AND a.challenge_id = c.challenge_id;

UPDATE bot_actions a SET repo_id = m.repo_id
FROM (
    SELECT installation_id, lower(full_name) AS name, min(repo_id) AS repo_id
    FROM github_installation_repositories
    GROUP BY installation_id, lower(full_name)
    HAVING count(DISTINCT repo_id) = 1
) m
WHERE a.repo_id IS NULL AND a.installation_id = m.installation_id AND lower(a.repo_full_name) = m.name;

-- What is still without an id cannot be told apart from a namesake: refuse it rather than guess.
UPDATE bot_actions SET status = 'CANCELLED', completed_at = now(), updated_at = now(),
    lease_owner = NULL, lease_expires_at = NULL,
    last_error = coalesce(last_error || '; ', '') || 'no repository id: refused (act by id only)'
WHERE repo_id IS NULL AND status IN ('PENDING', 'CLAIMED');

-- From now on an unfinished action always names its repository by id (finished history may not).
ALTER TABLE bot_actions ADD CONSTRAINT bot_actions_open_have_repo_id
    CHECK (repo_id IS NOT NULL OR status IN ('DONE', 'FAILED', 'CANCELLED'));

-- Per-PR ordering by (provider, repo_id, pr_number): is there an earlier unfinished action?
CREATE INDEX bot_actions_open_per_pr_id_idx
    ON bot_actions (provider, repo_id, pr_number, action_id) WHERE status IN ('PENDING', 'CLAIMED');
DROP INDEX bot_actions_open_per_pr_idx;
