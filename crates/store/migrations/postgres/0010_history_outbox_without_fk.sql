-- run_history and outbox take several rows per deployment, and a foreign
-- key makes every one of them look up (and share-lock) its run: in a
-- 400-row history insert that check was 4.7 of 11.1 ms (EXPLAIN ANALYZE).
-- The check guards nothing the code does not already: runs are never
-- deleted, and every path that writes history or an outbox row holds the
-- run's row in the same transaction (it creates the run, or locked it with
-- FOR UPDATE first). Kept identical to ../sqlite/0010_history_outbox_without_fk.sql.
ALTER TABLE run_history DROP CONSTRAINT run_history_run_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_run_id_fkey;
