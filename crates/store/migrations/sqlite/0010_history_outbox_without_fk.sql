-- run_history and outbox lose their foreign key to runs, as in
-- ../postgres/0010_history_outbox_without_fk.sql (why: there). SQLite cannot
-- drop a constraint, so each table is rebuilt with the same columns, ids
-- and indexes. Nothing references these two tables.
CREATE TABLE run_history_new (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT   NOT NULL,
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
INSERT INTO run_history_new (id, run_id, at, kind, state, step, status, service, instance, detail, actor, message_id)
    SELECT id, run_id, at, kind, state, step, status, service, instance, detail, actor, message_id FROM run_history;
DROP TABLE run_history;
ALTER TABLE run_history_new RENAME TO run_history;
CREATE INDEX run_history_run ON run_history (run_id, id);

CREATE TABLE outbox_new (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT   NOT NULL,
    message_id     TEXT   NOT NULL UNIQUE,
    envelope       TEXT   NOT NULL,
    trace_headers  TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    claimed_until  BIGINT,
    published_at   BIGINT
);
INSERT INTO outbox_new (id, run_id, message_id, envelope, trace_headers, created_at, claimed_until, published_at)
    SELECT id, run_id, message_id, envelope, trace_headers, created_at, claimed_until, published_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
