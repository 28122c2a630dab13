DROP TABLE outgoing_webhooks;
DROP INDEX approvals_created_idx;
ALTER TABLE approvals DROP COLUMN notice_post, DROP COLUMN request_post, DROP COLUMN comment,
    DROP COLUMN labels, DROP COLUMN request_hash;
DROP INDEX notifications_created_idx;
ALTER TABLE notifications DROP COLUMN campaign_name, DROP COLUMN request_hash,
    ADD COLUMN status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN slack_channel text,
    ADD COLUMN slack_ts text,
    ADD COLUMN sent_at timestamptz,
    ADD CONSTRAINT notifications_check CHECK (channel_id IS NOT NULL OR user_id IS NOT NULL);
CREATE INDEX notifications_pending_idx ON notifications (created_at) WHERE status = 'pending';
DROP TABLE slack_posts;
ALTER TABLE team_members DROP COLUMN slack_dms_muted;
DROP INDEX campaigns_unannounced_idx;
ALTER TABLE campaigns DROP COLUMN announced_status;
