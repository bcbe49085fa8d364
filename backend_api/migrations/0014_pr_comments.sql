-- The comment this App wrote on a pull request under a marker (issue 13, item 2): a worker reports
-- its id with the result, and the next action for that PR and marker is handed it back, so the
-- worker edits that comment directly, never one another App or bot wrote, and never pages through
-- all of the PR's comments to find it. Keyed by repository id (a name can move to another repository).
CREATE TABLE pr_comments (
    provider   TEXT NOT NULL CHECK (provider IN ('github', 'bitbucket')),
    repo_id    BIGINT NOT NULL,
    pr_number  INTEGER NOT NULL,
    marker     TEXT NOT NULL,
    comment_id BIGINT NOT NULL CHECK (comment_id > 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, repo_id, pr_number, marker)
);
