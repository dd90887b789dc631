-- A run's latest import progress, from the importer's reports while it
-- imports: the percentage the environment gave (a report without one keeps
-- the last; 100 once the import succeeded), how many reports came, and when
-- the last one did (milliseconds since the Unix epoch, UTC). NULL until the
-- import reports. Kept identical in ../postgres and ../sqlite.
ALTER TABLE runs ADD COLUMN import_percent DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN import_polls BIGINT;
ALTER TABLE runs ADD COLUMN import_progress_at BIGINT;
