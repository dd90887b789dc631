-- A run's row is updated several times while it runs (state, reason,
-- validation, import progress). An index on a column an UPDATE changes makes
-- PostgreSQL write a new entry in EVERY index of the table for that update;
-- when no indexed column changes, the update is HOT (heap-only, no index
-- writes) as long as the page has room. So the state is not indexed (a
-- state filter walks the created_at, pipeline or stage index instead) and
-- pages keep a fifth free for the new row versions. Kept identical to
-- ../sqlite/0008_hot_run_updates.sql but for the fill factor, which SQLite
-- does not have.
DROP INDEX runs_state;
ALTER TABLE runs SET (fillfactor = 80);
