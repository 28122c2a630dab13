DROP INDEX email_sends_sending_idx;
DROP INDEX email_sends_pending_idx;
CREATE INDEX email_sends_due_idx ON email_sends (next_attempt_at) WHERE status IN ('pending', 'sending');
