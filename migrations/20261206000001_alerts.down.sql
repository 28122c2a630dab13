DROP INDEX IF EXISTS webhook_events_source_received_idx;
DELETE FROM webhook_events WHERE source = 'slack_commands';
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_source_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_source_check
    CHECK (source IN ('mailjet', 'slack_events', 'slack_interactions'));
DELETE FROM slack_posts WHERE kind = 'alert';
ALTER TABLE slack_posts DROP CONSTRAINT slack_posts_kind_check;
ALTER TABLE slack_posts ADD CONSTRAINT slack_posts_kind_check CHECK (kind IN ('notification',
    'approval_request', 'approval_notice', 'approval_reminder', 'approval_outcome', 'approval_update',
    'task_thread', 'status_card', 'status_card_update', 'ephemeral'));
DROP TABLE alerts;
