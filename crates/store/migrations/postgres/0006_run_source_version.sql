-- The version the solution had in the source (development) environment
-- before the run exported it (Power Platform's "dev current version"),
-- from the exporter's event; NULL for runs that did not export. Kept
-- identical in ../postgres and ../sqlite.
ALTER TABLE runs ADD COLUMN source_version TEXT;
