-- k-of-n unlock shares. NULL for both: the server key is one secret an operator holds. Set: the
-- server key was split into `shares` shares, any `threshold` of which rebuild it. Neither
-- number is secret; changing them gains nothing (a wrong threshold only makes an unlock fail).
ALTER TABLE root_record
    ADD COLUMN shares    smallint,
    ADD COLUMN threshold smallint,
    ADD CONSTRAINT root_record_seal_check CHECK (
        (shares IS NULL AND threshold IS NULL)
        OR (threshold BETWEEN 2 AND 16 AND shares BETWEEN threshold AND 16)
    );
