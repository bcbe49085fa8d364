-- Provider-neutral dedup (issue 14): a delivery id is unique within one provider only, so the
-- dedup key carries the provider before a second provider writes rows. Every row so far is GitHub's.
ALTER TABLE webhook_deliveries ADD COLUMN provider TEXT NOT NULL DEFAULT 'github';
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (provider, delivery_id, event_name);
