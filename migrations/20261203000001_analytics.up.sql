-- Analytics (issue 18): what the rollups read and where they write.

-- A message posted in a Slack channel, as the team-activity figures count it: who, where,
-- when, in which thread. Never its text (the receiver drops the text before storing the event).
CREATE TABLE slack_messages (
    channel_id  text NOT NULL CHECK (length(channel_id) BETWEEN 1 AND 64),
    ts          text NOT NULL CHECK (length(ts) BETWEEN 1 AND 32),
    user_id     text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
    thread_ts   text CHECK (length(thread_ts) <= 32),   -- the thread a reply is in; NULL otherwise
    posted_at   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, ts)
);
CREATE INDEX slack_messages_posted_idx ON slack_messages (posted_at);
CREATE INDEX slack_messages_created_idx ON slack_messages (created_at);
CREATE INDEX slack_messages_channel_posted_idx ON slack_messages (channel_id, posted_at DESC);

-- Revenue the Campaign Manager attributes to a campaign, per UTC day.
CREATE TABLE campaign_revenue (
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    day          date NOT NULL,
    amount       numeric(16, 2) NOT NULL CHECK (amount >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, day)
);
CREATE INDEX campaign_revenue_updated_idx ON campaign_revenue (updated_at);

-- What the hourly run looks at to find the days that changed since its last run.
CREATE INDEX email_events_created_idx ON email_events (created_at);
CREATE INDEX email_events_occurred_idx ON email_events (occurred_at);
CREATE INDEX email_sends_sent_idx ON email_sends (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX approvals_updated_idx ON approvals (updated_at);
CREATE INDEX approvals_decided_idx ON approvals (decided_at) WHERE decided_at IS NOT NULL;
CREATE INDEX email_requests_template_idx ON email_requests (template_id);

-- Rollups per campaign (campaign_id), per template (template_id) or for everything (both NULL).
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_scope_check;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_scope_check
    CHECK (scope IN ('email', 'team', 'template'));
ALTER TABLE metric_rollups ADD COLUMN template_id bigint;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_subject_check
    CHECK ((scope = 'template') = (template_id IS NOT NULL) AND (scope <> 'template' OR campaign_id IS NULL));
DROP INDEX metric_rollups_period_key;
CREATE UNIQUE INDEX metric_rollups_period_key
    ON metric_rollups (scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start);
-- Ranking one period's campaigns or templates.
CREATE INDEX metric_rollups_ranking_idx ON metric_rollups (scope, period, period_start);

-- The engagement score of SPEC §2, on a period's counts: 100 × clamp(0.4 × open rate +
-- 0.6 × click rate − 2 × spam rate − unsubscribe rate, 0, 1), rates over delivered, 2 decimals.
CREATE FUNCTION campaign_sync_engagement(delivered bigint, opened bigint, clicked bigint, spam bigint, unsubscribed bigint)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN delivered <= 0 THEN 0::double precision ELSE
        round((100 * greatest(0, least(1,
            (0.4 * opened + 0.6 * clicked - 2 * spam - unsubscribed)::numeric / delivered)))::numeric, 2)::double precision
    END
$$;

-- A period's email figures as the API answers them: the counts, revenue when there is any,
-- open and click rates over delivered, and the engagement score.
CREATE FUNCTION campaign_sync_email_metrics(sent bigint, delivered bigint, opened bigint, clicked bigint,
                                            bounced bigint, spam bigint, unsubscribed bigint, revenue numeric)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'sent', sent, 'delivered', delivered, 'opened', opened, 'clicked', clicked, 'bounced', bounced,
        'spam', spam, 'unsubscribed', unsubscribed, 'revenue', revenue,
        'openRate', CASE WHEN delivered > 0 THEN opened::double precision / delivered ELSE 0 END,
        'clickRate', CASE WHEN delivered > 0 THEN clicked::double precision / delivered ELSE 0 END,
        'engagementScore', campaign_sync_engagement(delivered, opened, clicked, spam, unsubscribed)))
$$;
