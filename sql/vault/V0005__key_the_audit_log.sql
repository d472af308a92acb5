-- The audit chain is keyed: an entry written while the vault is unlocked carries an HMAC-SHA256
-- under the audit key instead of a plain SHA-256, so someone who can write the table (and drop
-- its triggers) cannot recompute the chain after changing it. Entries written while locked (a
-- wrong unlock, a status call) stay plain hashes; the next keyed entry covers their hashes.
ALTER TABLE audit_log ADD COLUMN keyed boolean NOT NULL DEFAULT false;

-- The audit key: random, made once, wrapped under the root key's KEK-wrapping subkey like a KEK
-- (and re-wrapped when the root key rotates, so the whole history stays verifiable).
CREATE TABLE audit_key (
    id           smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    root_version integer NOT NULL,
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
