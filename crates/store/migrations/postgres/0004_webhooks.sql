-- Outgoing webhooks at each gate event of a run (OnDeploymentRequested,
-- OnApprovalStarted, ...), as Power Platform pipelines raise business events.
-- Kept identical to ../sqlite/0004_webhooks.sql (tests/schema.rs) but for the
-- auto-assigned id. Same portable types as 0001: ids, enums and JSON as TEXT,
-- times as BIGINT ms.

-- The HMAC key is stored by reference only (`env:NAME`, `file:/path`);
-- `events` is a JSON array of event names; `pipeline_id` NULL: every run.
CREATE TABLE webhooks (
    id           TEXT   NOT NULL PRIMARY KEY,
    url          TEXT   NOT NULL,
    events       TEXT   NOT NULL,
    pipeline_id  TEXT,
    secret_ref   TEXT   NOT NULL,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);

-- One row per (webhook, event), written in the same transaction as the run
-- transition that raised it, so none is lost. `next_attempt_at` is NULL once
-- delivered or given up; while an attempt is in flight it is the end of that
-- attempt's lease (the row is claimed again after it, if nobody recorded
-- the outcome).
CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       TEXT   NOT NULL REFERENCES webhooks (id),
    event            TEXT   NOT NULL,
    run_id           TEXT   NOT NULL REFERENCES runs (id),
    payload          TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT,
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
