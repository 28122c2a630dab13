-- The whole schema of SPEC §7. Ids owned by the Campaign Manager (campaigns, team members,
-- approvals) are its own text ids; ids we mint are UUIDs; Mailjet ids are int64.

CREATE TABLE campaigns (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    subject         text CHECK (length(subject) <= 998),
    slug            text CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,79}$'),
    status          text NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'archived')),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deactivated_at  timestamptz
);
CREATE INDEX campaigns_active_idx ON campaigns (id) WHERE active;
CREATE UNIQUE INDEX campaigns_slug_key ON campaigns (slug) WHERE slug IS NOT NULL;
CREATE INDEX campaigns_subject_idx ON campaigns (lower(subject)) WHERE active AND subject IS NOT NULL;

CREATE TABLE team_members (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    email       text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 320),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 500),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX team_members_email_key ON team_members (lower(email));

-- Mapping of our campaigns to campaigns in an upstream (seed 002 MCPIntegration).
CREATE TABLE mcp_integrations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service      text NOT NULL CHECK (service IN ('mailjet', 'slack')),
    external_id  text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 128),
    internal_id  text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    matched_by   text NOT NULL DEFAULT 'api' CHECK (matched_by IN ('api', 'subject', 'channel_name', 'manual')),
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_synced  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_integrations_service_external_key UNIQUE (service, external_id),
    CONSTRAINT mcp_integrations_service_internal_key UNIQUE (service, internal_id)
);
CREATE INDEX mcp_integrations_internal_idx ON mcp_integrations (internal_id);

-- One row per sync of one campaign's statistics: history is kept.
CREATE TABLE email_statistics (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id          text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    mailjet_campaign_id  bigint NOT NULL,
    sent                 bigint NOT NULL DEFAULT 0 CHECK (sent >= 0),
    delivered            bigint NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    opened               bigint NOT NULL DEFAULT 0 CHECK (opened >= 0),
    clicked              bigint NOT NULL DEFAULT 0 CHECK (clicked >= 0),
    bounced              bigint NOT NULL DEFAULT 0 CHECK (bounced >= 0),
    spam                 bigint NOT NULL DEFAULT 0 CHECK (spam >= 0),
    blocked              bigint NOT NULL DEFAULT 0 CHECK (blocked >= 0),
    unsubscribed         bigint NOT NULL DEFAULT 0 CHECK (unsubscribed >= 0),
    open_rate            double precision NOT NULL DEFAULT 0 CHECK (open_rate >= 0),
    click_rate           double precision NOT NULL DEFAULT 0 CHECK (click_rate >= 0),
    engagement_score     double precision NOT NULL DEFAULT 0,
    sync_run_id          uuid,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_statistics_campaign_time_idx ON email_statistics (campaign_id, recorded_at DESC);
CREATE INDEX email_statistics_recorded_idx ON email_statistics (recorded_at);

CREATE TABLE email_templates (
    id                 bigint PRIMARY KEY,                -- Mailjet's template id
    name               text NOT NULL,
    category           text,
    variables          text[] NOT NULL DEFAULT '{}',
    variable_defaults  jsonb NOT NULL DEFAULT '{}'::jsonb,
    content_hash       text,
    last_used          timestamptz,
    performance_score  double precision,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A CampaignEmailRequest; its recipients are email_sends rows written in the same transaction.
CREATE TABLE email_requests (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text NOT NULL,
    campaign_id      text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    template_id      bigint NOT NULL,
    scheduled_at     timestamptz,
    test_mode        boolean NOT NULL DEFAULT false,
    recipient_count  integer NOT NULL CHECK (recipient_count > 0),
    status           text NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'sending', 'completed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT email_requests_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX email_requests_campaign_idx ON email_requests (campaign_id, created_at DESC);

CREATE TABLE email_sends (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- Mailjet CustomID
    request_id            uuid NOT NULL REFERENCES email_requests (id),
    email                 text NOT NULL CHECK (length(email) <= 320),
    name                  text NOT NULL DEFAULT '',
    variables             jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'suppressed', 'dead')),
    attempts              integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at       timestamptz NOT NULL DEFAULT now(),
    last_error            text,
    mailjet_message_id    bigint,
    mailjet_message_uuid  text,
    sending_started_at    timestamptz,
    sent_at               timestamptz,
    delivered_at          timestamptz,
    first_opened_at       timestamptz,
    last_opened_at        timestamptz,
    open_count            integer NOT NULL DEFAULT 0,
    first_clicked_at      timestamptz,
    last_clicked_at       timestamptz,
    click_count           integer NOT NULL DEFAULT 0,
    bounced_at            timestamptz,
    hard_bounce           boolean,
    spam_at               timestamptz,
    blocked_at            timestamptz,
    unsubscribed_at       timestamptz,
    resent                boolean NOT NULL DEFAULT false,
    history               jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX email_sends_request_email_key ON email_sends (request_id, lower(email));
CREATE INDEX email_sends_due_idx ON email_sends (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX email_sends_message_idx ON email_sends (mailjet_message_id) WHERE mailjet_message_id IS NOT NULL;
CREATE INDEX email_sends_request_status_idx ON email_sends (request_id, status);

-- Addresses never to send to again: hard bounces, spam complaints, unsubscribes.
CREATE TABLE email_suppressions (
    email       text PRIMARY KEY CHECK (email = lower(email)),
    reason      text NOT NULL CHECK (reason IN ('hard_bounce', 'spam', 'unsubscribe', 'manual')),
    source      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every webhook delivery we accepted, deduplicated, before it is processed.
CREATE TABLE webhook_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL CHECK (source IN ('mailjet', 'slack_events', 'slack_interactions')),
    external_id   text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 512),
    event_type    text NOT NULL,
    payload       jsonb,
    status        text NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'processed', 'ignored', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    CONSTRAINT webhook_events_source_external_key UNIQUE (source, external_id)
);
CREATE INDEX webhook_events_unprocessed_idx ON webhook_events (received_at) WHERE status = 'received';

CREATE TABLE email_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    send_id             uuid REFERENCES email_sends (id),
    webhook_event_id    bigint REFERENCES webhook_events (id),
    event_type          text NOT NULL CHECK (event_type IN ('sent', 'open', 'click', 'bounce', 'spam', 'blocked', 'unsub')),
    mailjet_message_id  bigint,
    occurred_at         timestamptz NOT NULL,
    details             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_events_send_idx ON email_events (send_id, occurred_at);
CREATE INDEX email_events_message_idx ON email_events (mailjet_message_id);

CREATE TABLE slack_integrations (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_member_id       text REFERENCES team_members (id) ON UPDATE CASCADE,
    workspace_id         text NOT NULL,
    slack_user_id        text NOT NULL,
    slack_username       text NOT NULL DEFAULT '',
    real_name            text,
    display_name         text,
    is_active            boolean NOT NULL DEFAULT true,
    availability         text CHECK (availability IN ('active', 'away')),
    availability_at      timestamptz,
    channel_mappings     jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_synced          timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT slack_integrations_user_key UNIQUE (workspace_id, slack_user_id)
);
CREATE INDEX slack_integrations_member_idx ON slack_integrations (team_member_id);

CREATE TABLE slack_channels (
    id            text PRIMARY KEY,                 -- Slack channel id, stable across renames
    workspace_id  text NOT NULL,
    name          text NOT NULL,
    purpose       text NOT NULL DEFAULT '',
    topic         text NOT NULL DEFAULT '',
    member_count  integer NOT NULL DEFAULT 0 CHECK (member_count >= 0),
    is_private    boolean NOT NULL DEFAULT false,
    is_archived   boolean NOT NULL DEFAULT false,
    campaign_id   text REFERENCES campaigns (id) ON UPDATE CASCADE,
    last_synced   timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_channels_campaign_idx ON slack_channels (campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX slack_channels_name_idx ON slack_channels (workspace_id, name);

CREATE TABLE notifications (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    idempotency_key  text UNIQUE,
    kind             text NOT NULL CHECK (kind IN ('status_change', 'approval_needed', 'task_assigned', 'milestone_reached')),
    campaign_id      text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    channel_id       text,
    user_id          text,
    message          text NOT NULL,
    attachments      jsonb NOT NULL DEFAULT '[]'::jsonb,
    actions          jsonb NOT NULL DEFAULT '[]'::jsonb,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    slack_channel    text,
    slack_ts         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CHECK (channel_id IS NOT NULL OR user_id IS NOT NULL)
);
CREATE INDEX notifications_campaign_idx ON notifications (campaign_id, created_at DESC);
CREATE INDEX notifications_pending_idx ON notifications (created_at) WHERE status = 'pending';

CREATE TABLE approvals (
    id               text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    campaign_id      text NOT NULL REFERENCES campaigns (id) ON UPDATE CASCADE,
    stage            text NOT NULL,
    approver_id      text NOT NULL REFERENCES team_members (id) ON UPDATE CASCADE,
    slack_user_id    text,
    deadline         timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'rejected', 'changes_requested', 'expired')),
    decided_at       timestamptz,
    decided_by       text,
    slack_channel    text,
    slack_ts         text,
    reminders_sent   integer NOT NULL DEFAULT 0,
    last_reminded_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL) OR status = 'expired')
);
CREATE INDEX approvals_pending_deadline_idx ON approvals (deadline) WHERE status = 'pending';
CREATE INDEX approvals_campaign_idx ON approvals (campaign_id);

-- Every run of every job: trigger, times, outcome, counts, and a cursor to resume from.
CREATE TABLE sync_runs (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job            text NOT NULL,
    trigger        text NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual', 'api', 'webhook')),
    scheduled_for  timestamptz,
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    items_synced   integer NOT NULL DEFAULT 0,
    items_failed   integer NOT NULL DEFAULT 0,
    counts         jsonb NOT NULL DEFAULT '{}'::jsonb,
    cursor         text,
    error          text,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
-- At most one running run per job: a sync never overlaps itself.
CREATE UNIQUE INDEX sync_runs_one_running_key ON sync_runs (job) WHERE status = 'running';
-- A scheduled tick is recorded once.
CREATE UNIQUE INDEX sync_runs_tick_key ON sync_runs (job, scheduled_for) WHERE trigger IN ('schedule', 'catch_up');
CREATE INDEX sync_runs_job_started_idx ON sync_runs (job, started_at DESC);

-- OAuth tokens, encrypted with AES-256-GCM (nonce || ciphertext) under the key named by key_id.
CREATE TABLE oauth_tokens (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider            text NOT NULL CHECK (provider IN ('slack')),
    workspace_id        text NOT NULL,
    key_id              text NOT NULL,
    access_token_enc    bytea NOT NULL,
    refresh_token_enc   bytea,
    scopes              text NOT NULL DEFAULT '',
    expires_at          timestamptz,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reinstall')),
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT oauth_tokens_provider_workspace_key UNIQUE (provider, workspace_id)
);

-- Append-only trail of every operation.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text,
    request_id   text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id, occurred_at DESC);
CREATE INDEX audit_log_time_idx ON audit_log (occurred_at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Daily, weekly and monthly aggregates with period-over-period trends.
CREATE TABLE metric_rollups (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope         text NOT NULL CHECK (scope IN ('email', 'team')),
    campaign_id   text REFERENCES campaigns (id) ON UPDATE CASCADE,
    period        text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    period_start  date NOT NULL,
    metrics       jsonb NOT NULL DEFAULT '{}'::jsonb,
    trends        jsonb NOT NULL DEFAULT '{}'::jsonb,
    computed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX metric_rollups_period_key
    ON metric_rollups (scope, coalesce(campaign_id, ''), period, period_start);
