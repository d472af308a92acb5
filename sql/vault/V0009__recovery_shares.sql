-- Recovery shares of a vault sealed by a PKCS#11 token. Nobody holds that vault's server key, so
-- k-of-n recovery shares authorise what a held key would (rekey, rotate-root, seal migrate).
-- They split a random secret unrelated to the server key: they never unlock or decrypt.
-- `recovery_check` is an HMAC of that secret under a subkey of the root key, so the database
-- alone can neither test guesses against it nor swap in a split of its own.
ALTER TABLE root_record
    ADD COLUMN recovery_shares    smallint,
    ADD COLUMN recovery_threshold smallint,
    ADD COLUMN recovery_set       bytea,
    ADD COLUMN recovery_check     bytea,
    ADD CONSTRAINT root_record_recovery_check CHECK (
        (recovery_shares IS NULL AND recovery_threshold IS NULL AND recovery_set IS NULL
            AND recovery_check IS NULL)
        OR (token_sealed IS NOT NULL
            AND recovery_threshold BETWEEN 2 AND 16
            AND recovery_shares BETWEEN recovery_threshold AND 16
            AND octet_length(recovery_set) = 4
            AND octet_length(recovery_check) = 32)
    );
