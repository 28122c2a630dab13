DROP INDEX email_requests_created_idx;
DROP TABLE webhook_rejections;
ALTER TABLE email_sends DROP COLUMN reconcile_at;
DROP INDEX webhook_events_custom_id_idx;
