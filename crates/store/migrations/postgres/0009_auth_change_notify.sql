-- Gateways remember tokens and role grants they have read (auth_cache.rs)
-- and must forget them the moment one changes, on every replica: these
-- triggers announce each such change on channel slipway_auth when its
-- transaction commits, whoever makes it (the gateway, an operator in psql).
-- A token's last_used_at is not announced: it changes nothing it grants.
-- SQLite has no counterpart (../sqlite/0009_auth_change_notify.sql): the
-- embedded gateway reads tokens and grants every time.
CREATE FUNCTION slipway_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('slipway_auth', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_changed
    AFTER UPDATE OF id, name, subject, groups_json, token_hash, expires_at, revoked_at OR DELETE
    ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION slipway_auth_changed();
CREATE TRIGGER api_tokens_truncated
    AFTER TRUNCATE ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION slipway_auth_changed();

CREATE TRIGGER role_grants_changed
    AFTER INSERT OR UPDATE OR DELETE
    ON role_grants FOR EACH STATEMENT EXECUTE FUNCTION slipway_auth_changed();
CREATE TRIGGER role_grants_truncated
    AFTER TRUNCATE ON role_grants FOR EACH STATEMENT EXECUTE FUNCTION slipway_auth_changed();
