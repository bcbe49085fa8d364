-- Issue 13, items 7 and 14 (docs/security.md).

-- Whitelisted authors by GitHub user id: a login can be renamed and then registered by someone else,
-- an id cannot. `whitelist_logins` stays for display, resolved to these ids when the settings are
-- written; a row written before this migration has logins and no ids, and exempts nobody until its
-- settings are saved again.
ALTER TABLE repo_settings ADD COLUMN whitelist_user_ids BIGINT[] NOT NULL DEFAULT '{}';
