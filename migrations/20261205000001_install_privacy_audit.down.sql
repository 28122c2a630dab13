ALTER TABLE audit_log DROP COLUMN outcome;
ALTER TABLE oauth_tokens
    DROP COLUMN revoked_why,
    DROP COLUMN revoked_at,
    DROP COLUMN installed_at,
    DROP COLUMN installed_by,
    DROP COLUMN team_name;
UPDATE oauth_tokens SET status = 'needs_reinstall' WHERE status = 'revoked';
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_status_check;
ALTER TABLE oauth_tokens ADD CONSTRAINT oauth_tokens_status_check
    CHECK (status IN ('active', 'needs_reinstall'));
