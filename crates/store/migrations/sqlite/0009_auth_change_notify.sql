-- PostgreSQL announces token and role-grant changes to the gateways that
-- cache them (../postgres/0009_auth_change_notify.sql). The embedded SQLite
-- gateway caches nothing, so there is nothing to announce; this migration
-- keeps the two histories the same length.
SELECT 1;
