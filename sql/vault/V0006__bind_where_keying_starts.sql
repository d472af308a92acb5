-- Where the keyed chain starts: entries after `keyed_after` written by an unlocked replica carry
-- a MAC. The number is also bound into the wrapped key's associated data, so whoever can write
-- this table cannot move the start forward and pass a rewritten chain off as plain hashes.
-- Keys made before this column existed were made with the chain's first entry keyed (0).
ALTER TABLE audit_key ADD COLUMN keyed_after bigint NOT NULL DEFAULT 0 CHECK (keyed_after >= 0);
