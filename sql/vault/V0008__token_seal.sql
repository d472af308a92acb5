-- The PKCS#11 seal: the server key is random, and stored only sealed (AES-GCM) by a key that
-- never leaves the token, labelled `token_key_label` there. Both NULL: the server key is held by
-- people (one key, or shares). The sealed form is useless without the token and its PIN.
ALTER TABLE root_record
    ADD COLUMN token_key_label text,
    ADD COLUMN token_sealed    bytea,
    ADD CONSTRAINT root_record_token_check CHECK ((token_key_label IS NULL) = (token_sealed IS NULL));
