-- The dashboard's sign-in sessions, cancelling an email request, and what its pages filter on.

-- One signed-in browser: the cookie holds a random id, only its SHA-256 is stored, so a
-- database dump cannot be replayed as a session. The CSRF token is per session.
CREATE TABLE dashboard_sessions (
    id_hash     bytea PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('admin', 'viewer')),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    csrf        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expires_idx ON dashboard_sessions (expires_at);

-- A cancelled request: its pending recipients become `cancelled`, in-flight ones finish.
ALTER TABLE email_requests ADD COLUMN cancelled_at timestamptz;
ALTER TABLE email_requests DROP CONSTRAINT email_requests_status_check;
ALTER TABLE email_requests ADD CONSTRAINT email_requests_status_check
    CHECK (status IN ('accepted', 'sending', 'completed', 'cancelled'));
ALTER TABLE email_sends DROP CONSTRAINT email_sends_status_check;
ALTER TABLE email_sends ADD CONSTRAINT email_sends_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'suppressed', 'dead', 'cancelled'));

-- Whatever path puts a recipient of a cancelled request back to `pending` (a retry after a
-- transient failure, a reconciliation that found nothing), it becomes `cancelled` instead.
CREATE FUNCTION email_sends_respect_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND EXISTS (
        SELECT 1 FROM email_requests r WHERE r.id = NEW.request_id AND r.cancelled_at IS NOT NULL
    ) THEN
        NEW.status := 'cancelled';
        NEW.last_error := 'the request was cancelled';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER email_sends_respect_cancel BEFORE UPDATE OF status ON email_sends
    FOR EACH ROW WHEN (NEW.status = 'pending' AND OLD.status <> 'pending')
    EXECUTE FUNCTION email_sends_respect_cancel();

-- The dashboard's lists: requests by status, webhook intake of the last hours, a recipient
-- searched by address within a request.
CREATE INDEX email_requests_status_idx ON email_requests (status, created_at DESC);
CREATE INDEX webhook_events_received_idx ON webhook_events (received_at) INCLUDE (source, event_type, status);
CREATE INDEX email_sends_request_email_idx ON email_sends (request_id, lower(email) text_pattern_ops);
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor text_pattern_ops, id DESC);

-- Each campaign channel's latest message, kept by a trigger as messages are stored, so the
-- "gone quiet" bottleneck reads one row per channel instead of a look-up in slack_messages for
-- each of 10,000 channels (95 ms).
ALTER TABLE slack_channels ADD COLUMN last_message_at timestamptz;
UPDATE slack_channels ch SET last_message_at = m.last
    FROM (SELECT channel_id, max(posted_at) AS last FROM slack_messages GROUP BY channel_id) m
    WHERE m.channel_id = ch.id;
CREATE FUNCTION slack_channels_note_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE slack_channels SET last_message_at = greatest(last_message_at, NEW.posted_at)
        WHERE id = NEW.channel_id AND (last_message_at IS NULL OR last_message_at < NEW.posted_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER slack_channels_note_message AFTER INSERT ON slack_messages
    FOR EACH ROW EXECUTE FUNCTION slack_channels_note_message();
