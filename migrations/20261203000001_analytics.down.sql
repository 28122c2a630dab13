DROP FUNCTION campaign_sync_email_metrics(bigint, bigint, bigint, bigint, bigint, bigint, bigint, numeric);
DROP FUNCTION campaign_sync_engagement(bigint, bigint, bigint, bigint, bigint);
DROP INDEX metric_rollups_ranking_idx;
DROP INDEX metric_rollups_period_key;
DELETE FROM metric_rollups WHERE scope = 'template';
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_subject_check;
ALTER TABLE metric_rollups DROP COLUMN template_id;
ALTER TABLE metric_rollups DROP CONSTRAINT metric_rollups_scope_check;
ALTER TABLE metric_rollups ADD CONSTRAINT metric_rollups_scope_check CHECK (scope IN ('email', 'team'));
CREATE UNIQUE INDEX metric_rollups_period_key
    ON metric_rollups (scope, coalesce(campaign_id, ''), period, period_start);
DROP INDEX email_requests_template_idx;
DROP INDEX approvals_decided_idx;
DROP INDEX approvals_updated_idx;
DROP INDEX email_sends_sent_idx;
DROP INDEX email_events_occurred_idx;
DROP INDEX email_events_created_idx;
DROP TABLE campaign_revenue;
DROP TABLE slack_messages;
