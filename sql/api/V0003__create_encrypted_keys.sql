-- Ciphertexts of recoverable keys, sealed by the vault under keyring = workspace id with the key
-- id as context. Never a DEK or KEK: those stay in the vault. Deleting a key deletes its row.
CREATE TABLE encrypted_keys (
    key_id       text PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
    workspace_id text NOT NULL REFERENCES workspaces (id),
    keyring      text NOT NULL,
    ciphertext   text NOT NULL,
    dek_version  integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz
);
CREATE INDEX encrypted_keys_by_version ON encrypted_keys (keyring, dek_version);

-- Every decrypt: who (root key), which keys, when, and the request id.
CREATE TABLE decrypt_audit (
    id           bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    root_key_id  text NOT NULL,
    request_id   text NOT NULL,
    key_ids      text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decrypt_audit_by_time ON decrypt_audit (created_at);
