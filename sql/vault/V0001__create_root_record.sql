-- The root record: the vault's random 32-byte root key, sealed (AES-256-GCM) under the unlock key
-- that argon2id derives from the operator's server key. It doubles as the verifier: a wrong
-- server key fails to open it. There is at most one row.
--
-- `generation` increases on every change (rekey, root rotation) and is the compare-and-swap
-- token for both. `root_version` increases only when the root key itself changes, which is what
-- tells other unlocked replicas to lock themselves.
CREATE TABLE root_record (
    id           smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    generation   bigint NOT NULL,
    root_version integer NOT NULL,
    argon2_m_kib integer NOT NULL,
    argon2_t     integer NOT NULL,
    argon2_p     integer NOT NULL,
    salt         bytea NOT NULL,
    sealed_root  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
