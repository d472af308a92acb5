-- APIs group keys; `store_encrypted_keys` is the opt-in to recoverable keys (not retroactive).
CREATE TABLE apis (
    id                   text PRIMARY KEY,
    workspace_id         text NOT NULL REFERENCES workspaces (id),
    name                 text NOT NULL,
    store_encrypted_keys boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apis_by_workspace ON apis (workspace_id);

-- Identities tie keys to one of the customer's own users (`externalId`).
CREATE TABLE identities (
    id           text PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces (id),
    external_id  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, external_id)
);

-- Customer keys. Only the SHA-256 of the whole key is stored, plus `start` for display;
-- `prefix` and `byte_length` let a reroll issue a key of the same shape.
-- `credits_remaining` NULL means unlimited. `ratelimits` is a JSON array of
-- {id, name, limit, duration, autoApply}.
CREATE TABLE keys (
    id                text PRIMARY KEY,
    workspace_id      text NOT NULL REFERENCES workspaces (id),
    api_id            text NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    hash              bytea NOT NULL UNIQUE,
    start             text NOT NULL,
    prefix            text,
    byte_length       smallint NOT NULL CHECK (byte_length BETWEEN 16 AND 255),
    name              text,
    identity_id       text REFERENCES identities (id),
    meta              jsonb,
    permissions       text[] NOT NULL DEFAULT '{}',
    expires_at        timestamptz,
    enabled           boolean NOT NULL DEFAULT true,
    credits_remaining bigint,
    refill_amount     bigint,
    refill_interval   text CHECK (refill_interval IN ('daily', 'monthly')),
    refill_day        smallint CHECK (refill_day BETWEEN 1 AND 31),
    last_refill_at    timestamptz,
    ratelimits        jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz,
    last_used_at      timestamptz
);
CREATE INDEX keys_by_api ON keys (api_id, id);
CREATE INDEX keys_by_identity ON keys (identity_id) WHERE identity_id IS NOT NULL;

-- Root keys: workspace admin tokens (`sb_` + 64 hex), stored hashed.
CREATE TABLE root_keys (
    id           text PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces (id),
    hash         bytea NOT NULL UNIQUE,
    start        text NOT NULL,
    end_chars    text NOT NULL,
    name         text,
    permissions  text[] NOT NULL,
    enabled      boolean NOT NULL DEFAULT true,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX root_keys_by_workspace ON root_keys (workspace_id, id);
