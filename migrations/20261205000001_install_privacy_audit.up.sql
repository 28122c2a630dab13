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

-- Data-subject requests: a person's sends are found by address, and an erased person is
-- remembered only by the SHA-256 of their lower-cased address (so a suppression still holds).
CREATE INDEX email_sends_email_idx ON email_sends (lower(email));
CREATE TABLE erased_people (
    email_hash  text PRIMARY KEY CHECK (email_hash ~ '^sha256:[0-9a-f]{64}$'),
    erased_at   timestamptz NOT NULL DEFAULT now()
);

-- GET /api/audit pages newest first by id (keyset), filtered by what is asked.
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);
CREATE INDEX audit_log_subject_idx ON audit_log (entity_type, entity_id, id DESC);
CREATE INDEX audit_log_outcome_idx ON audit_log (outcome, id DESC) WHERE outcome <> 'ok';

-- Retention walks only what it still has to pseudonymise.
CREATE INDEX email_sends_recipient_retention_idx ON email_sends (updated_at) WHERE email NOT LIKE 'sha256:%';
CREATE INDEX email_events_details_retention_idx ON email_events (created_at) WHERE details <> '{}'::jsonb;
CREATE INDEX webhook_rejections_received_idx ON webhook_rejections (received_at);
CREATE INDEX outgoing_webhooks_created_idx ON outgoing_webhooks (created_at) WHERE status <> 'pending';
