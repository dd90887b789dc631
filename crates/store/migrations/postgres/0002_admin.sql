-- Admin side: environments, pipelines and their stages, sharing, role grants,
-- API tokens, and the hash-chained audit log. Kept identical to
-- ../sqlite/0002_admin.sql (tests/schema.rs). Same portable types as 0001:
-- ids, enums and JSON as TEXT, times as BIGINT ms, booleans as BIGINT 0/1.

-- Credentials are stored by reference only (`env:NAME`, `file:/path`).
CREATE TABLE environments (
    id                 TEXT   NOT NULL PRIMARY KEY,
    name               TEXT   NOT NULL UNIQUE,
    url                TEXT   NOT NULL,
    kind               TEXT   NOT NULL,
    credentials        TEXT   NOT NULL,
    validation_status  TEXT   NOT NULL,
    validation_error   TEXT,
    validated_at       BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE pipelines (
    id                    TEXT   NOT NULL PRIMARY KEY,
    name                  TEXT   NOT NULL UNIQUE,
    description           TEXT   NOT NULL,
    allow_redeploy_older  BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- The development environments a pipeline deploys from.
CREATE TABLE pipeline_sources (
    pipeline_id     TEXT NOT NULL REFERENCES pipelines (id),
    environment_id  TEXT NOT NULL REFERENCES environments (id),
    PRIMARY KEY (pipeline_id, environment_id)
);
CREATE INDEX pipeline_sources_environment ON pipeline_sources (environment_id);

-- `settings` holds approval, gates, deploy-as and policies as JSON.
CREATE TABLE stages (
    id                 TEXT   NOT NULL PRIMARY KEY,
    pipeline_id        TEXT   NOT NULL REFERENCES pipelines (id),
    name               TEXT   NOT NULL,
    previous_stage_id  TEXT,
    settings           TEXT   NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (pipeline_id, name)
);

-- A stage deploys to one or more target environments (fan-out).
CREATE TABLE stage_targets (
    stage_id        TEXT NOT NULL REFERENCES stages (id),
    environment_id  TEXT NOT NULL REFERENCES environments (id),
    PRIMARY KEY (stage_id, environment_id)
);
CREATE INDEX stage_targets_environment ON stage_targets (environment_id);

-- Who may see and run a pipeline: principal_kind is 'user' or 'group'.
CREATE TABLE pipeline_shares (
    pipeline_id     TEXT NOT NULL REFERENCES pipelines (id),
    principal_kind  TEXT NOT NULL,
    principal       TEXT NOT NULL,
    PRIMARY KEY (pipeline_id, principal_kind, principal)
);
CREATE INDEX pipeline_shares_principal ON pipeline_shares (principal_kind, principal);

-- Roles ('admin', 'maker', 'approver') granted to users or groups.
CREATE TABLE role_grants (
    principal_kind  TEXT NOT NULL,
    principal       TEXT NOT NULL,
    role            TEXT NOT NULL,
    PRIMARY KEY (principal_kind, principal, role)
);

-- Only the sha256 of a token is kept; the token is shown once.
CREATE TABLE api_tokens (
    id              TEXT   NOT NULL PRIMARY KEY,
    name            TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    groups_json     TEXT   NOT NULL,
    token_hash      TEXT   NOT NULL UNIQUE,
    display_prefix  TEXT   NOT NULL,
    created_by      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    last_used_at    BIGINT
);

-- Append-only; each record's hash covers its fields and the previous hash.
CREATE TABLE audit_log (
    seq          BIGINT NOT NULL PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    entity_kind  TEXT   NOT NULL,
    entity_id    TEXT   NOT NULL,
    pipeline_id  TEXT,
    before_json  TEXT,
    after_json   TEXT,
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL
);
CREATE INDEX audit_log_pipeline ON audit_log (pipeline_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- The chain's head, one row: appenders lock it, so records get consecutive
-- sequence numbers and each links to the one before.
CREATE TABLE audit_head (
    id    BIGINT NOT NULL PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT   NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The pipeline and stage a run deploys through (NULL for runs submitted
-- without one), so makers and approvers see the runs of their pipelines.
ALTER TABLE runs ADD COLUMN pipeline_id TEXT;
ALTER TABLE runs ADD COLUMN stage_id TEXT;
CREATE INDEX runs_pipeline ON runs (pipeline_id, created_at);
CREATE INDEX runs_requested_by ON runs (requested_by, created_at);
