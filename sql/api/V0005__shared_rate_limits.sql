-- Rate limits shared by every api replica (ops/PERFORMANCE.md, "Rate limits across replicas").
--
-- One row per (bucket, window): how many units the replicas have taken in that window. A
-- replica takes a lease of several units at once when its limit is far from full, and exactly
-- what it needs when it is near, so a leased unit that goes unused only ever refuses, never
-- admits. UNLOGGED: counts are soft state. A Postgres crash, or a failover to a standby (which
-- never receives unlogged tables), empties it, and each limit may then admit its window again.
CREATE UNLOGGED TABLE ratelimit_windows (
    bucket       text   NOT NULL,
    window_start bigint NOT NULL,  -- Unix ms, the bucket's offset past a multiple of the length
    used         bigint NOT NULL,
    expires_at   bigint NOT NULL,  -- Unix ms; after it the row is never read again
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX ratelimit_windows_by_expiry ON ratelimit_windows (expires_at);

-- Takes `cost` units of `bucket` (limit `p_limit` per `p_duration` ms, a sliding window: this
-- window's count plus the previous one's, weighted by how much of it still overlaps), plus
-- `p_share` of what would be left as a lease. Windows start `p_offset` ms past multiples of the
-- duration (each bucket its own offset, so that windows do not all end at once). Times come
-- from the database's clock, so replicas with skewed clocks still agree on windows. Returns the
-- units granted (0: refused), the weighted count after the grant, the window's start and the
-- database's now.
CREATE FUNCTION ratelimit_take(
    p_bucket text, p_limit bigint, p_duration bigint, p_offset bigint, p_cost bigint,
    p_share double precision
) RETURNS TABLE (granted bigint, used bigint, window_start bigint, now_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_now   bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    v_start bigint := v_now - mod(v_now - p_offset, p_duration);
    v_prev  bigint;
    v_cur   bigint;
    v_used  bigint;
    v_grant bigint := 0;
BEGIN
    SELECT w.used INTO v_prev FROM ratelimit_windows w
     WHERE w.bucket = p_bucket AND w.window_start = v_start - p_duration;
    -- Creates or locks this window's row, so concurrent takers queue here.
    INSERT INTO ratelimit_windows AS w (bucket, window_start, used, expires_at)
    VALUES (p_bucket, v_start, 0, v_start + 2 * p_duration)
    ON CONFLICT ON CONSTRAINT ratelimit_windows_pkey DO UPDATE SET used = w.used
    RETURNING w.used INTO v_cur;
    v_used := v_cur + ceil(coalesce(v_prev, 0)::numeric
                           * (p_duration - (v_now - v_start)) / p_duration)::bigint;
    IF p_limit - v_used >= p_cost THEN
        v_grant := p_cost + floor((p_limit - v_used - p_cost) * p_share)::bigint;
        UPDATE ratelimit_windows w SET used = w.used + v_grant
         WHERE w.bucket = p_bucket AND w.window_start = v_start;
    END IF;
    RETURN QUERY SELECT v_grant, v_used + v_grant, v_start, v_now;
END
$$;

-- Live api replicas, for the `local` fallback's share of a limit: each replica writes its row
-- every few seconds and counts the rows seen recently.
CREATE UNLOGGED TABLE api_replicas (
    id      text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- Namespaces of `ratelimit.limit`, per workspace, created on first use.
CREATE TABLE ratelimit_namespaces (
    id           text PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- Per-identifier limits of a namespace; `identifier` may hold `*` wildcards.
CREATE TABLE ratelimit_overrides (
    id           text PRIMARY KEY,
    namespace_id text NOT NULL REFERENCES ratelimit_namespaces (id) ON DELETE CASCADE,
    identifier   text NOT NULL,
    "limit"      bigint NOT NULL CHECK ("limit" >= 0),
    duration     bigint NOT NULL CHECK (duration > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz,
    UNIQUE (namespace_id, identifier)
);

-- Identities gain Unkey's `meta` and rate limits shared by all their keys. Deleting one leaves
-- its keys without an identity.
ALTER TABLE identities
    ADD COLUMN meta       jsonb,
    ADD COLUMN ratelimits jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN updated_at timestamptz;
CREATE INDEX identities_by_workspace ON identities (workspace_id, id);
ALTER TABLE keys
    DROP CONSTRAINT keys_identity_id_fkey,
    ADD CONSTRAINT keys_identity_id_fkey
        FOREIGN KEY (identity_id) REFERENCES identities (id) ON DELETE SET NULL;
