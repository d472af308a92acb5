-- k-of-n unlock shares. All NULL: the server key is one secret an operator holds. Set: the
-- server key was split into `shares` shares, any `threshold` of which rebuild it; `share_set`
-- is the split's random id, which every share carries, so a share of another split is refused
-- before it counts. None of them is secret; changing them gains nothing (an unlock fails).
ALTER TABLE root_record
    ADD COLUMN shares    smallint,
    ADD COLUMN threshold smallint,
    ADD COLUMN share_set bytea,
    ADD CONSTRAINT root_record_seal_check CHECK (
        (shares IS NULL AND threshold IS NULL AND share_set IS NULL)
        OR (threshold BETWEEN 2 AND 16 AND shares BETWEEN threshold AND 16
            AND octet_length(share_set) = 4)
    );
