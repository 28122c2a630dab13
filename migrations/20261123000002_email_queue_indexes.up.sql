-- The email queue claims `pending` rows in due order and reconciles old `sending` rows. One
-- index over both statuses made every claim step over the rows other batches had in flight.
DROP INDEX email_sends_due_idx;
CREATE INDEX email_sends_pending_idx ON email_sends (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_sends_sending_idx ON email_sends (sending_started_at) WHERE status = 'sending';
