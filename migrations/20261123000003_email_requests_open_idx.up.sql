-- Every email queue run completes the requests with nothing left to send: it looks only at
-- the requests not completed yet.
CREATE INDEX email_requests_open_idx ON email_requests (created_at) WHERE status <> 'completed';
