-- Reconciliation weighs every stored Mailjet event that names a send (CustomID), applied or
-- not, before it decides to resend.
CREATE INDEX webhook_events_custom_id_idx ON webhook_events ((payload->>'CustomID'))
    WHERE source = 'mailjet';

-- When reconciliation may look at a `sending` row again; `sending_started_at` keeps the time
-- of the attempt itself.
ALTER TABLE email_sends ADD COLUMN reconcile_at timestamptz;

-- Events of a delivery that could not be used (not an object, a field missing or of the
-- wrong type): kept as received, with the reason, for an operator to list and replay. The
-- delivery's other events are stored as usual. A redelivery of the same bytes is kept once.
CREATE TABLE webhook_rejections (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('mailjet', 'slack_events', 'slack_interactions')),
    position          integer NOT NULL CHECK (position >= 0),
    raw               bytea NOT NULL,
    digest            text NOT NULL CHECK (length(digest) = 64),
    reason            text NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at       timestamptz,
    replay_outcome    text,
    webhook_event_id  bigint REFERENCES webhook_events (id),
    CONSTRAINT webhook_rejections_digest_key UNIQUE (source, digest)
);
CREATE INDEX webhook_rejections_open_idx ON webhook_rejections (id) WHERE replayed_at IS NULL;

-- GET /api/email-requests lists requests newest first, a page at a time.
CREATE INDEX email_requests_created_idx ON email_requests (created_at DESC, id DESC);
