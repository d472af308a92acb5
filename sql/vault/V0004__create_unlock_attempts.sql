-- The unlock throttle, shared by every replica and kept across restarts. One row per client
-- (verified identity and address) that presented a server key and has not yet presented the
-- right one.
--
-- An attempt is counted here before its key is evaluated: `failures` grows and `blocked_until`
-- moves forward as if it will fail, and a right key deletes the row. `in_flight_until` marks an
-- attempt being evaluated, so a second one from the same client is refused at once instead of
-- queueing for the KDF; it expires on its own if a replica dies mid-attempt.
CREATE TABLE unlock_attempts (
    identity        text NOT NULL,
    address         inet NOT NULL,
    failures        integer NOT NULL DEFAULT 0,
    blocked_until   timestamptz,
    in_flight_until timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identity, address)
);
