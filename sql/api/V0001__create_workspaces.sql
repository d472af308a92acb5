-- Workspaces are the tenants. Every api, key and root key belongs to exactly one, and nothing of
-- one workspace is visible through another's root keys.
CREATE TABLE workspaces (
    id         text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
