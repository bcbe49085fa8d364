-- Vacuum bot_actions after a fixed number of changed rows, not a fraction of the table: finished
-- (DONE/FAILED/CANCELLED) rows are kept, so the default trigger (20 % of the rows) would drift
-- further away as the table grows — 2M dead tuples at 10M rows — and every claim would walk the
-- dead index entries of the actions finished meanwhile (docs/benchmarks.md, "Contention and bloat").
ALTER TABLE bot_actions SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02
);
