-- The decision for a pull request reads its latest challenge (store/pr_context.py). With only
-- (repo_id, created_at) and the PENDING-only index, PostgreSQL walked every challenge of the
-- repository to find one pull request's: each ingest cost grew with the repository's history
-- (1,300 buffers a call after 1,800 PRs in bench.ingest, pg_stat_statements).
CREATE INDEX challenges_pr_idx ON challenges (repo_id, pr_number, challenge_id DESC);
