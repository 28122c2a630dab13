//! Every job of the product, one file each, named as the job. Each file holds its job's one
//! definition (`JOB`: stable name, queue, attempts, backoff, timeout, default schedule, typed
//! arguments, handler); [`ALL`] lists them, and the registry, configuration, the scheduler,
//! `jobs list` and the docs read that list.

pub mod deliver_outgoing_webhooks;
pub mod deliver_slack_posts;
pub mod diagnostics_probe;
pub mod evaluate_alerts;
pub mod process_email_queue;
pub mod process_webhook_events;
pub mod purge_expired_data;
pub mod rollup_metrics;
pub mod send_approval_reminders;
pub mod support;
pub mod sync_mailjet_stats;
pub mod sync_mailjet_templates;
pub mod sync_slack_users;
pub mod update_slack_channels;

use crate::config::Schedulable;
use crate::queue::job::{JobDefinition, Registry};

/// Every job, scheduled ones in the order `jobs list` shows them.
pub const ALL: &[JobDefinition] = &[
    sync_mailjet_stats::JOB,
    sync_slack_users::JOB,
    process_email_queue::JOB,
    update_slack_channels::JOB,
    sync_mailjet_templates::JOB,
    send_approval_reminders::JOB,
    rollup_metrics::JOB,
    purge_expired_data::JOB,
    evaluate_alerts::JOB,
    deliver_slack_posts::JOB,
    deliver_outgoing_webhooks::JOB,
    process_webhook_events::JOB,
    diagnostics_probe::JOB,
];

/// The definition of `name`.
pub fn find(name: &str) -> Option<&'static JobDefinition> {
    ALL.iter().find(|job| job.name == name)
}

/// The jobs that have a schedule, as configuration reads them (names and default schedules).
pub fn schedulable() -> Vec<Schedulable> {
    ALL.iter()
        .filter_map(|job| {
            job.schedule.map(|default| Schedulable {
                name: job.name,
                default,
            })
        })
        .collect()
}

/// Every job this build can run.
pub fn builtin() -> Registry {
    Registry::from_definitions(ALL)
}
