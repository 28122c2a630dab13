-- The Slack install flow: a credential can be revoked (app_uninstalled, tokens_revoked), and
-- remembers who installed it and when.
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_status_check;
ALTER TABLE oauth_tokens ADD CONSTRAINT oauth_tokens_status_check
    CHECK (status IN ('active', 'needs_reinstall', 'revoked'));
ALTER TABLE oauth_tokens
    ADD COLUMN team_name    text,
    ADD COLUMN installed_by text,
    ADD COLUMN installed_at timestamptz,
    ADD COLUMN revoked_at   timestamptz,
    ADD COLUMN revoked_why  text;

-- Every audit entry says how it ended.
ALTER TABLE audit_log ADD COLUMN outcome text NOT NULL DEFAULT 'ok';
