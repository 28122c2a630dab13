//! Every metric the service records, with the help text `/metrics` shows for it, and the
//! counters that alert rules divide or compare, started at 0 so a rule sees a series before
//! the first event (a `rate()` over a series that appears only with its first increment
//! misses that increment).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

const COUNTERS: &[(&str, &str)] = &[
    (
        "email_recipients_accepted_total",
        "Recipients stored by accepted email requests.",
    ),
    (
        "email_reconciliations_total",
        "Sends left sending and reconciled, by outcome (event, found, resent, dead, waiting).",
    ),
    (
        "email_requests_completed_total",
        "Email requests with every recipient settled.",
    ),
    (
        "email_requests_total",
        "Email requests received, by outcome (accepted, replayed, invalid, conflict).",
    ),
    (
        "email_sends_total",
        "Recipient outcomes written by the email queue, by status.",
    ),
    (
        "email_suppressions_total",
        "Addresses added to the suppression list, by reason.",
    ),
    (
        "http_requests_total",
        "HTTP requests served, by method, matched route and status.",
    ),
    (
        "jobs_dead_total",
        "Tasks that failed for good (dead letters), by queue and job.",
    ),
    (
        "jobs_failed_total",
        "Task attempts that failed for good, by queue and job.",
    ),
    (
        "jobs_rescheduled_total",
        "Task attempts put off by a rate limit without spending an attempt, by queue and job.",
    ),
    (
        "jobs_retried_total",
        "Task attempts that failed and will be retried with backoff, by queue and job.",
    ),
    (
        "jobs_succeeded_total",
        "Task attempts that succeeded, by queue and job.",
    ),
    (
        "jobs_started_total",
        "Task attempts started, by queue and job.",
    ),
    (
        "people_erased_total",
        "Data-subject erasures carried out (API or CLI).",
    ),
    (
        "queue_fetch_errors_total",
        "Failed reads from the queue (Redis unreachable), by queue.",
    ),
    (
        "queue_reclaimed_total",
        "Tasks taken over from a worker that stopped renewing their lease, by queue.",
    ),
    (
        "schedule_ticks_coalesced_total",
        "Missed schedule ticks folded into one catch-up run, by job.",
    ),
    (
        "slack_cache_invalidations_total",
        "Slack look-ups deleted from the cache by Slack events.",
    ),
    (
        "slack_cache_lookups_total",
        "Slack look-ups, by outcome (hit, miss).",
    ),
    (
        "slack_token_refreshes_total",
        "Slack token rotations, by outcome.",
    ),
    (
        "sync_items_total",
        "Items a sync wrote or failed, by job and outcome.",
    ),
    (
        "sync_runs_skipped_total",
        "Sync ticks skipped because the previous run was still running, by job.",
    ),
    ("sync_runs_total", "Sync runs finished, by job and outcome."),
    (
        "upstream_rate_limited_seconds_total",
        "Seconds upstreams told us to wait (429 Retry-After), by service.",
    ),
    (
        "upstream_requests_total",
        "Upstream calls, by service, endpoint and outcome.",
    ),
    (
        "webhook_events_duplicate_total",
        "Webhook events delivered again and not stored twice, by source.",
    ),
    (
        "webhook_events_processed_total",
        "Stored webhook events applied, by source, type and outcome.",
    ),
    (
        "webhook_events_rejected_total",
        "Webhook events that could not be used, kept for replay, by source.",
    ),
    (
        "webhook_events_sanitized_total",
        "Webhook events stored with U+0000 replaced, by source.",
    ),
    (
        "webhook_events_swept_total",
        "Stored webhook events enqueued by the sweeper (their enqueue was lost).",
    ),
    (
        "webhook_events_total",
        "Webhook events stored, by source and type.",
    ),
    (
        "webhook_requests_total",
        "Webhook deliveries, by source and outcome.",
    ),
    (
        "outgoing_webhooks_total",
        "Webhooks to the Campaign Manager, by outcome (delivered, retry, failed).",
    ),
    (
        "slack_approval_clicks_refused_total",
        "Approval clicks that could not decide, by why (not_yours, not_pending).",
    ),
    (
        "alert_notices_total",
        "Alert notices of evaluate_alerts, by kind (fired, repeated, resolved).",
    ),
    (
        "slack_approval_reminders_total",
        "Approval reminders queued.",
    ),
    (
        "slack_approval_requests_total",
        "POST /api/approvals, by outcome (accepted, replayed, invalid, conflict, error).",
    ),
    (
        "slack_approvals_decided_total",
        "Approvals decided or expired, by status.",
    ),
    ("slack_approvals_requested_total", "Approvals asked for."),
    (
        "slack_modals_opened_total",
        "Request-changes modals, by outcome (opened, refused, failed, timeout).",
    ),
    (
        "slack_notification_requests_total",
        "POST /api/notifications, by outcome (accepted, replayed, invalid, conflict, error).",
    ),
    (
        "slack_notifications_accepted_total",
        "Notifications stored, by type.",
    ),
    (
        "slack_posts_reconciled_total",
        "Slack posts left ambiguous and settled from the channel's history, by outcome (found, reposted).",
    ),
    (
        "slack_posts_total",
        "Slack outbox rows settled, by outcome (sent, skipped, failed, retry, ambiguous).",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (
        "slack_credential_needs_reinstall",
        "1 when Slack refused the stored refresh token: the app must be installed again.",
    ),
    (
        "sync_last_success_timestamp_seconds",
        "Unix time of the last successful run, by job.",
    ),
    (
        "upstream_token_expires_in_seconds",
        "Seconds until the upstream credential expires, by service.",
    ),
];

const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "slack_post_seconds",
        "Time to deliver one Slack outbox row (look-ups, the call), by op (post, update, ephemeral).",
    ),
    ("email_batch_size", "Messages per Mailjet Send call."),
    (
        "email_send_latency_seconds",
        "Duration of Mailjet Send calls.",
    ),
    (
        "http_request_duration_seconds",
        "Duration of HTTP requests, by method, matched route and status.",
    ),
    (
        "job_duration_seconds",
        "Duration of task attempts, by queue and job.",
    ),
    (
        "schedule_lag_seconds",
        "How late a schedule tick was enqueued, by job.",
    ),
    (
        "sync_run_duration_seconds",
        "Duration of sync runs, by job.",
    ),
    (
        "upstream_limiter_wait_seconds",
        "Time spent waiting for the shared rate limit before a call.",
    ),
    (
        "upstream_request_duration_seconds",
        "Duration of upstream calls, by service and endpoint.",
    ),
    (
        "webhook_ack_seconds",
        "Time from receipt to acknowledgement of a webhook, by source.",
    ),
    (
        "webhook_processing_lag_seconds",
        "Time from receipt to application of a webhook event, by source.",
    ),
];

/// Describes every metric and starts the alerting counters at 0.
pub fn describe_and_zero() {
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    for (name, help) in HISTOGRAMS {
        let unit = if name.ends_with("_seconds") {
            Unit::Seconds
        } else {
            Unit::Count
        };
        describe_histogram!(*name, unit, *help);
    }
    for service in ["mailjet", "slack"] {
        metrics::counter!("upstream_rate_limited_seconds_total", "service" => service).absolute(0);
    }
    for status in ["dead", "failed"] {
        metrics::counter!("email_sends_total", "status" => status).absolute(0);
    }
    metrics::counter!("webhook_events_rejected_total", "source" => "mailjet").absolute(0);
}

/// `sync_runs_total{job, outcome="failed"}` at 0 for each job a worker schedules, so an alert
/// on its rate sees the series before the first failure.
pub fn zero_sync_failures<'a>(jobs: impl IntoIterator<Item = &'a str>) {
    for job in jobs {
        metrics::counter!("sync_runs_total", "job" => job.to_owned(), "outcome" => "failed")
            .absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::{COUNTERS, GAUGES, HISTOGRAMS};

    /// Every metric name written in `src/` (a string literal ending as metric names do) has a
    /// description here, so `/metrics` never serves a family without `# HELP`.
    #[test]
    fn every_metric_the_code_records_is_described() {
        let described: std::collections::HashSet<&str> = COUNTERS
            .iter()
            .chain(GAUGES)
            .chain(HISTOGRAMS)
            .map(|(n, _)| *n)
            .collect();
        let mut missing = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(
                    std::fs::read_dir(&path)
                        .expect("dir")
                        .filter_map(|e| e.ok().map(|e| e.path())),
                );
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("catalog.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for literal in text.split('"').skip(1).step_by(2) {
                let metric_like = literal.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && ["_total", "_seconds", "_batch_size", "_needs_reinstall"]
                        .iter()
                        .any(|s| literal.ends_with(s))
                    && literal.contains('_');
                if metric_like && !described.contains(literal) {
                    missing.push(format!("{literal} ({})", path.display()));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "metrics without a description: {missing:?}"
        );
    }
}
