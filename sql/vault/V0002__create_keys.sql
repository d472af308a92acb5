-- Key-encryption keys. Each version is a random key sealed under the KEK-wrapping subkey of the
-- root key whose version is `root_version`. A KEK is deleted once no DEK uses it.
CREATE TABLE keks (
    version      integer PRIMARY KEY CHECK (version > 0),
    root_version integer NOT NULL,
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Keyrings: one per workspace. A deleted keyring stays as a tombstone (`deleted_at`) so that
-- nothing silently recreates it under the same name.
--
-- Versions below `min_decryption_version` no longer decrypt (reversible); versions below
-- `trimmed_below` are gone for good.
CREATE TABLE keyrings (
    name                   text PRIMARY KEY,
    latest_version         integer NOT NULL CHECK (latest_version > 0),
    min_decryption_version integer NOT NULL DEFAULT 1,
    trimmed_below          integer NOT NULL DEFAULT 1,
    deleted_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (min_decryption_version BETWEEN 1 AND latest_version),
    CHECK (trimmed_below BETWEEN 1 AND min_decryption_version)
);

-- Data-encryption keys: version `version` of `keyring`, sealed under KEK `kek_version`.
-- `encryptions_leased` counts the encryptions handed out in leased blocks, so the 2^31 budget
-- per DEK is kept without a write per call.
CREATE TABLE deks (
    keyring            text NOT NULL REFERENCES keyrings (name),
    version            integer NOT NULL CHECK (version > 0),
    kek_version        integer NOT NULL REFERENCES keks (version),
    wrapped            bytea NOT NULL,
    encryptions_leased bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (keyring, version)
);

CREATE INDEX deks_by_kek_version ON deks (kek_version);
