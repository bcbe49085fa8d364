-- Commit statuses and reopen-after-verification are outbox actions too.
ALTER TABLE bot_actions DROP CONSTRAINT bot_actions_action_type_check;
ALTER TABLE bot_actions ADD CONSTRAINT bot_actions_action_type_check
    CHECK (action_type IN ('UPSERT_PR_COMMENT', 'CLOSE_PR_WITH_COMMENT', 'SET_COMMIT_STATUS', 'REOPEN_PR_WITH_COMMENT'));
