-- What a run needs beyond its deployment: the gates it passes (from its
-- stage, and a scheduled time), the artifact it validated and imports, the
-- validation report, the approval decision. JSON as TEXT, as elsewhere.
ALTER TABLE runs ADD COLUMN gates TEXT;
ALTER TABLE runs ADD COLUMN artifact TEXT;
ALTER TABLE runs ADD COLUMN validation TEXT;
ALTER TABLE runs ADD COLUMN decision TEXT;

-- Artifacts by pipeline, solution and version: exported once, reused by
-- every later stage and by redeployments.
CREATE TABLE artifacts (
    pipeline_id       TEXT   NOT NULL,
    solution_name     TEXT   NOT NULL,
    version           TEXT   NOT NULL,
    managed_sha256    TEXT   NOT NULL,
    unmanaged_sha256  TEXT   NOT NULL,
    managed_bytes     BIGINT NOT NULL,
    run_id            TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (pipeline_id, solution_name, version)
);
