-- Slipway store schema, PostgreSQL flavour. Kept column for column identical
-- to ../sqlite/0001_runs_history_outbox.sql: only the auto-assigned ids differ
-- (`BIGINT GENERATED ALWAYS AS IDENTITY` here, `INTEGER NOT NULL PRIMARY KEY
-- AUTOINCREMENT` there). Portable types only: uuids, enums and JSON as TEXT,
-- times as BIGINT milliseconds since the Unix epoch (UTC). tests/schema.rs
-- checks that both flavours keep the same tables, columns and indexes.

CREATE TABLE runs (
    id            TEXT   NOT NULL PRIMARY KEY,
    state         TEXT   NOT NULL,
    deployment    TEXT   NOT NULL,
    requested_by  TEXT   NOT NULL,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX runs_created_at ON runs (created_at);

-- Append-only: every state transition (kind 'transition') and every run
-- event received (kind 'event', deduplicated by message_id), in order.
CREATE TABLE run_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      TEXT   NOT NULL REFERENCES runs (id),
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    state       TEXT,
    step        TEXT,
    status      TEXT,
    service     TEXT,
    instance    TEXT,
    detail      TEXT,
    actor       TEXT,
    message_id  TEXT   UNIQUE
);
CREATE INDEX run_history_run ON run_history (run_id, id);

-- Commands waiting to be published, written in the same transaction as the
-- state that caused them.
CREATE TABLE outbox (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         TEXT   NOT NULL REFERENCES runs (id),
    message_id     TEXT   NOT NULL UNIQUE,
    envelope       TEXT   NOT NULL,
    trace_headers  TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    claimed_until  BIGINT,
    published_at   BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
