-- The pseudonym of an address, as store::people::pseudonym computes it in Rust; one definition
-- for the claim query's suppression join, retention and erasure.
CREATE FUNCTION email_pseudonym(address text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'sha256:' || encode(sha256(convert_to(lower(address), 'UTF8')), 'hex');
