-- The vault's audit log: one row per call on the mTLS listener, hash-chained (see vault/src/audit.rs).
-- Rows are only ever appended; the triggers refuse UPDATE, DELETE and TRUNCATE, so changing the
-- log takes a deliberate act by the table's owner, and `strongbox-vault audit verify` shows it.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    at        timestamptz NOT NULL,
    identity  text NOT NULL,
    action    text NOT NULL,
    keyring   text,
    items     integer,
    status    smallint NOT NULL,
    trace_id  text NOT NULL,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
