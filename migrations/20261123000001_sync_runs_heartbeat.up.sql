-- A running sync renews heartbeat_at; a run whose worker died stops renewing it, and the next
-- run marks it failed instead of being skipped forever.
ALTER TABLE sync_runs ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now();

-- A failed tick may be retried: only live or settled runs hold their tick.
DROP INDEX sync_runs_tick_key;
CREATE UNIQUE INDEX sync_runs_tick_key ON sync_runs (job, scheduled_for)
    WHERE trigger IN ('schedule', 'catch_up') AND status IN ('running', 'succeeded', 'skipped');
