-- Issue 13, item 9: pull_request and /prgate command events for an installation prgate does not know
-- yet wait here until its installation event arrives (docs/redelivery.md, "Events before their
-- installation"), then go through the same decision code as live events and are deleted. Bounded by
-- count (backend settings) and age (the maintenance loop deletes what is older than GitHub's 3-day
-- redelivery window).
CREATE TABLE parked_pull_request_events (
    parked_id       BIGSERIAL PRIMARY KEY,  -- received order
    installation_id BIGINT NOT NULL,
    delivery_id     TEXT NOT NULL,
    event_kind      TEXT NOT NULL CHECK (event_kind IN ('pull_request', 'issue_comment')),
    event           JSONB NOT NULL,         -- the normalized event, as the receiver sent it
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (delivery_id, event_kind)
);
CREATE INDEX parked_pull_request_events_installation_idx ON parked_pull_request_events (installation_id, parked_id);
CREATE INDEX parked_pull_request_events_received_idx ON parked_pull_request_events (received_at);

-- A parked delivery is recorded PARKED (a redelivery of it is still a duplicate); one refused by the
-- bounds DROPPED.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('ACCEPTED', 'IGNORED', 'PARKED', 'DROPPED'));

-- Issue 13, item 11: GitHub's HMAC covers the body, not X-GitHub-Delivery, so a captured body replayed
-- under a fresh delivery id must still be a duplicate. The receiver sends the SHA-256 of the raw body
-- it verified; a second delivery with the same digest is refused as a duplicate. NULL for rows from
-- older receivers and for reconciliation's own events.
ALTER TABLE webhook_deliveries ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX webhook_deliveries_body_sha256_key ON webhook_deliveries (body_sha256)
    WHERE body_sha256 IS NOT NULL;
