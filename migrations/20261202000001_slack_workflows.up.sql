-- Slack workflows: one outbox of every Slack message the service posts, updates or shows
-- ephemerally (`slack_posts`), notifications and approvals that point into it, a team
-- member's consent to DMs, and the outbox of signed webhooks to the Campaign Manager.

ALTER TABLE team_members ADD COLUMN slack_dms_muted boolean NOT NULL DEFAULT false;

-- The status the campaign's channel was last told of: a campaign whose status differs has a
-- `status_change` notice (and a status card update) to queue, however the status changed.
ALTER TABLE campaigns ADD COLUMN announced_status text;
UPDATE campaigns SET announced_status = status;
CREATE INDEX campaigns_unannounced_idx ON campaigns (id) WHERE announced_status IS DISTINCT FROM status;

-- One row per message to post (`op = post`), to change in place (`update`, of `target_post`)
-- or to show one user (`ephemeral`). `dedupe_key` makes every enqueue idempotent (a reminder
-- is queued once however many dynos try). A post is `posting` from just before the call to
-- Slack until its outcome is written: a `posting` row a crashed run left behind after its call
-- began is settled from the channel's history (message metadata carries the row id) before
-- anything is resent.
CREATE TABLE slack_posts (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dedupe_key           text NOT NULL UNIQUE CHECK (length(dedupe_key) <= 400),
    kind                 text NOT NULL CHECK (kind IN ('notification', 'approval_request', 'approval_notice',
                             'approval_reminder', 'approval_outcome', 'approval_update', 'task_thread',
                             'status_card', 'status_card_update', 'ephemeral')),
    op                   text NOT NULL DEFAULT 'post' CHECK (op IN ('post', 'update', 'ephemeral')),
    campaign_id          text REFERENCES campaigns (id) ON UPDATE CASCADE,
    notification_id      uuid,
    approval_id          text,
    -- Where: an explicit channel, the campaign's mapped channel, or a DM to a team member
    -- (or straight to a Slack user).
    channel_id           text,
    to_campaign_channel  boolean NOT NULL DEFAULT false,
    dm_member            text REFERENCES team_members (id) ON UPDATE CASCADE,
    dm_user              text,
    ephemeral_user       text,
    -- An interaction's response_url: an ephemeral answer to a click goes there.
    response_url         text,
    thread_of            uuid REFERENCES slack_posts (id),
    target_post          uuid REFERENCES slack_posts (id),
    pin                  boolean NOT NULL DEFAULT false,
    text                 text NOT NULL,
    blocks               jsonb NOT NULL DEFAULT '[]'::jsonb,
    attachments          jsonb NOT NULL DEFAULT '[]'::jsonb,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'posting', 'sent', 'skipped', 'failed')),
    attempts             integer NOT NULL DEFAULT 0,
    not_before           timestamptz NOT NULL DEFAULT now(),
    -- The run that claimed it (a run settles only its own claims) and when; `posting_since`
    -- is set just before the call, so a claimed row never attempted is known to be safe to
    -- hand to another run at once.
    claim                uuid,
    claimed_at           timestamptz,
    posting_since        timestamptz,
    reason               text,
    slack_channel        text,
    slack_ts             text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz,
    CHECK (op <> 'update' OR target_post IS NOT NULL),
    CHECK (op <> 'ephemeral' OR ephemeral_user IS NOT NULL),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX slack_posts_open_idx ON slack_posts (created_at) WHERE status IN ('pending', 'posting');
CREATE INDEX slack_posts_notification_idx ON slack_posts (notification_id) WHERE notification_id IS NOT NULL;
CREATE INDEX slack_posts_approval_idx ON slack_posts (approval_id) WHERE approval_id IS NOT NULL;

-- A notification's delivery is its posts' (a DM, a channel message, a task-thread reply).
ALTER TABLE notifications
    DROP COLUMN status, DROP COLUMN attempts, DROP COLUMN last_error,
    DROP COLUMN slack_channel, DROP COLUMN slack_ts, DROP COLUMN sent_at,
    DROP CONSTRAINT notifications_check,
    ADD COLUMN request_hash text NOT NULL DEFAULT '',
    ADD COLUMN campaign_name text NOT NULL DEFAULT '';
CREATE INDEX notifications_created_idx ON notifications (created_at DESC, id DESC);

-- An approval's request, its labels, the comment of "request changes", and its posts.
ALTER TABLE approvals
    ADD COLUMN request_hash text NOT NULL DEFAULT '',
    ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN comment text,
    ADD COLUMN request_post uuid REFERENCES slack_posts (id),
    ADD COLUMN notice_post uuid REFERENCES slack_posts (id);
CREATE INDEX approvals_created_idx ON approvals (created_at DESC, id DESC);

-- Signed webhooks to the Campaign Manager (`CAMPAIGN_MANAGER_WEBHOOK_URL`): the row id is the
-- event id it deduplicates on; retried with backoff until a 2xx answers.
CREATE TABLE outgoing_webhooks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dedupe_key       text NOT NULL UNIQUE,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX outgoing_webhooks_due_idx ON outgoing_webhooks (next_attempt_at) WHERE status = 'pending';
