DROP TRIGGER slack_channels_note_message ON slack_messages;
DROP FUNCTION slack_channels_note_message();
ALTER TABLE slack_channels DROP COLUMN last_message_at;
DROP INDEX audit_log_actor_idx;
DROP INDEX sync_runs_started_idx;
DROP INDEX webhook_events_received_idx;
DROP INDEX email_sends_request_email_idx;
DROP INDEX email_requests_status_idx;
DROP TRIGGER email_sends_respect_cancel ON email_sends;
DROP FUNCTION email_sends_respect_cancel();
UPDATE email_sends SET status = 'failed' WHERE status = 'cancelled';
UPDATE email_requests SET status = 'completed' WHERE status = 'cancelled';
ALTER TABLE email_sends DROP CONSTRAINT email_sends_status_check;
ALTER TABLE email_sends ADD CONSTRAINT email_sends_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'suppressed', 'dead'));
ALTER TABLE email_requests DROP CONSTRAINT email_requests_status_check;
ALTER TABLE email_requests ADD CONSTRAINT email_requests_status_check
    CHECK (status IN ('accepted', 'sending', 'completed'));
ALTER TABLE email_requests DROP COLUMN cancelled_at;
DROP TABLE dashboard_sessions;
