//! The registry of every job and schedule. Each job gets its own file beside this one as it is
//! built; the names here are stable (they appear in configuration, Redis keys and metrics).

/// A job that runs on a cron schedule (SPEC §2).
#[derive(Debug, Clone, Copy)]
pub struct ScheduledJob {
    /// Stable name, used as `schedules.<name>` and `SCHEDULE_<NAME>`.
    pub name: &'static str,
    /// What the job does, for `jobs list` and the dashboard.
    pub purpose: &'static str,
}

/// Every scheduled job; default schedules are in `config/default.toml`.
pub const SCHEDULED_JOBS: &[ScheduledJob] = &[
    ScheduledJob {
        name: "sync_mailjet_stats",
        purpose: "statistics snapshot for every active campaign; auto-map by subject",
    },
    ScheduledJob {
        name: "sync_slack_users",
        purpose: "match Slack users to team members by email; availability",
    },
    ScheduledJob {
        name: "process_email_queue",
        purpose: "send due recipients in batches of at most 50",
    },
    ScheduledJob {
        name: "update_slack_channels",
        purpose: "channel names, purposes, member counts; map channels to campaigns",
    },
    ScheduledJob {
        name: "sync_mailjet_templates",
        purpose: "import templates and their variables",
    },
    ScheduledJob {
        name: "send_approval_reminders",
        purpose: "remind approvers before the deadline; expire overdue approvals",
    },
    ScheduledJob {
        name: "rollup_metrics",
        purpose: "daily, weekly and monthly aggregates with trends",
    },
    ScheduledJob {
        name: "purge_expired_data",
        purpose: "retention: raw webhook payloads and old snapshots",
    },
];

pub mod diagnostics;
pub mod email_queue;
pub mod paging;
pub mod purge_expired_data;
pub mod reconcile_sends;
pub mod registry;
pub mod runs;
pub mod sync_mailjet_stats;
pub mod sync_mailjet_templates;
pub mod sync_slack_users;
pub mod update_slack_channels;
pub mod webhook_events;

/// The queue most jobs run on.
pub const DEFAULT_QUEUE: &str = "default";

/// Every job this build can run. Scheduled jobs without a handler here are not scheduled.
pub fn builtin() -> registry::Registry {
    let mut registry = registry::Registry::new();
    let probe = registry.register(diagnostics::NAME, DEFAULT_QUEUE, diagnostics::run);
    probe.max_attempts = 3;
    probe.backoff_base = std::time::Duration::from_secs(1);
    probe.backoff_max = std::time::Duration::from_secs(5);
    registry.register(
        purge_expired_data::NAME,
        DEFAULT_QUEUE,
        purge_expired_data::run,
    );
    let webhooks = registry.register(
        webhook_events::NAME,
        webhook_events::QUEUE,
        webhook_events::run,
    );
    webhooks.max_attempts = 8;
    webhooks.backoff_base = std::time::Duration::from_secs(2);
    webhooks.backoff_max = std::time::Duration::from_secs(120);
    registry
        .register(
            sync_mailjet_stats::NAME,
            DEFAULT_QUEUE,
            sync_mailjet_stats::run,
        )
        .timeout = std::time::Duration::from_secs(25 * 60);
    // Retries of single recipients live in email_sends; a failed run is retried soon.
    let email = registry.register(email_queue::NAME, DEFAULT_QUEUE, email_queue::run);
    email.max_attempts = 10;
    email.backoff_base = std::time::Duration::from_secs(2);
    email.backoff_max = std::time::Duration::from_secs(60);
    email.timeout = std::time::Duration::from_secs(60 * 60);
    // Slack's Tier 2 limit makes a large workspace take minutes; a run that stops is resumed.
    registry
        .register(sync_slack_users::NAME, DEFAULT_QUEUE, sync_slack_users::run)
        .timeout = std::time::Duration::from_secs(50 * 60);
    registry
        .register(
            update_slack_channels::NAME,
            DEFAULT_QUEUE,
            update_slack_channels::run,
        )
        .timeout = std::time::Duration::from_secs(60 * 60);
    registry
        .register(
            sync_mailjet_templates::NAME,
            DEFAULT_QUEUE,
            sync_mailjet_templates::run,
        )
        .timeout = std::time::Duration::from_secs(50 * 60);
    registry
}
