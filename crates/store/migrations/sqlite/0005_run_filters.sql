-- Run history filters (GET /api/v1/deployments?pipeline=&stage=&solution=&state=)
-- are applied in SQL, before the limit. The solution name lives inside the
-- `deployment` JSON; it gets a column of its own, written when the run is
-- created and backfilled here. Solution names compare case-insensitively,
-- as in Dataverse, so the index is on LOWER(solution_name). Kept identical
-- to ../postgres/0005_run_filters.sql but for the JSON function of the backfill.
ALTER TABLE runs ADD COLUMN solution_name TEXT;
UPDATE runs SET solution_name = json_extract(deployment, '$.solution_name');
CREATE INDEX runs_solution_name ON runs (LOWER(solution_name), created_at);
CREATE INDEX runs_stage ON runs (stage_id, created_at);
CREATE INDEX runs_state ON runs (state, created_at);
