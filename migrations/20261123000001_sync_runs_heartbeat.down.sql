DROP INDEX sync_runs_tick_key;
CREATE UNIQUE INDEX sync_runs_tick_key ON sync_runs (job, scheduled_for) WHERE trigger IN ('schedule', 'catch_up');
ALTER TABLE sync_runs DROP COLUMN heartbeat_at;
