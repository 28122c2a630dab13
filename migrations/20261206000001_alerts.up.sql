-- Alerts the service raises about itself (jobs::evaluate_alerts). One row per episode: it
-- fires, is repeated at a cooldown while it lasts, and is resolved when its condition clears.
-- At most one open episode per rule and subject, however many evaluators race.
CREATE TABLE alerts (
    id                bigserial PRIMARY KEY,
    rule              text NOT NULL CHECK (rule ~ '^[a-z_]{1,64}$'),
    subject           text NOT NULL CHECK (length(subject) <= 200),
    severity          text NOT NULL CHECK (severity IN ('warning', 'critical')),
    summary           text NOT NULL,
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    link              text NOT NULL DEFAULT '',
    fired_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_notified_at  timestamptz NOT NULL DEFAULT now(),
    notifications     integer NOT NULL DEFAULT 1,
    resolved_at       timestamptz,
    CHECK (resolved_at IS NULL OR resolved_at >= fired_at)
);
CREATE UNIQUE INDEX alerts_open_idx ON alerts (rule, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_recent_idx ON alerts (fired_at DESC, id DESC);

-- Alerts are posted to the ops channel through the Slack outbox like every other message.
ALTER TABLE slack_posts DROP CONSTRAINT slack_posts_kind_check;
ALTER TABLE slack_posts ADD CONSTRAINT slack_posts_kind_check CHECK (kind IN ('notification',
    'approval_request', 'approval_notice', 'approval_reminder', 'approval_outcome', 'approval_update',
    'task_thread', 'status_card', 'status_card_update', 'ephemeral', 'alert'));

-- Slash commands (`/campaign-sync …`) are stored like the other Slack deliveries and answered
-- by process_webhook_events through the command's response_url.
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_source_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_source_check
    CHECK (source IN ('mailjet', 'slack_events', 'slack_interactions', 'slack_commands'));

-- What the webhook-silence rule reads (emails sent lately has its index already): Mailjet
-- deliveries received lately.
CREATE INDEX webhook_events_source_received_idx ON webhook_events (source, received_at DESC);
