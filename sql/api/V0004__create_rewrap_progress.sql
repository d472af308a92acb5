-- Progress of the rewrap job per keyring: the target DEK version, how far the walk (ordered by
-- key id) got, and how many rows it moved. A crashed run resumes after `last_key_id`.
CREATE TABLE rewrap_progress (
    keyring        text PRIMARY KEY,
    target_version integer NOT NULL,
    last_key_id    text NOT NULL DEFAULT '',
    rows_done      bigint NOT NULL DEFAULT 0,
    rows_failed    bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
