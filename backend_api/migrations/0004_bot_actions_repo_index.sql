-- The owner API lists a repository's actions newest first.
CREATE INDEX bot_actions_repo_id_idx ON bot_actions (repo_id, action_id DESC);
