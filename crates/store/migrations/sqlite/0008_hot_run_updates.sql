-- The state is not indexed: it changes with every step, and on PostgreSQL
-- an index on it turns each of those updates into writes to every index of
-- the table (see ../postgres/0008_hot_run_updates.sql). Kept identical to
-- that migration but for the fill factor, which SQLite does not have.
DROP INDEX runs_state;
