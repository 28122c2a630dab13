DROP INDEX outgoing_webhooks_created_idx;
DROP INDEX webhook_rejections_received_idx;
DROP INDEX email_events_details_retention_idx;
DROP INDEX email_sends_recipient_retention_idx;
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id, occurred_at DESC);
CREATE INDEX audit_log_time_idx ON audit_log (occurred_at);
DROP INDEX audit_log_outcome_idx;
DROP INDEX audit_log_actor_page_idx;
DROP INDEX audit_log_subject_idx;
DROP INDEX audit_log_action_idx;
DROP INDEX audit_log_page_idx;
DROP TABLE erased_people;
DROP INDEX email_sends_email_idx;
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
