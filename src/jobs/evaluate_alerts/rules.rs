//! The rules: from what was read, the conditions that hold now. Each group of rules reads one
//! source; a group whose source could not be read says nothing, so its open alerts are left as
//! they are (neither repeated nor resolved) until it can be read again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::{AlertSettings, Schedule};
use crate::store::alert_inputs::{Install, RunStreak, StuckRequest};
use crate::store::alerts::Condition;
use crate::telemetry::timeline::Tally;

/// A group of rules and the rule names it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Sync,
    Dead,
    Upstream,
    Installs,
    Email,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Sync,
        Group::Dead,
        Group::Upstream,
        Group::Installs,
        Group::Email,
    ];

    /// The rules it decides.
    pub fn rules(self) -> &'static [&'static str] {
        match self {
            Group::Sync => &["sync_failing", "sync_stale"],
            Group::Dead => &["dead_letters"],
            Group::Upstream => &[
                "upstream_errors",
                "upstream_slow",
                "upstream_unreachable",
                "auth_failing",
                "rate_limited",
            ],
            Group::Installs => &["install_revoked", "token_expiring"],
            Group::Email => &["email_stuck", "webhook_silent"],
        }
    }
}

fn condition(
    rule: &'static str,
    subject: &str,
    severity: &'static str,
    summary: String,
    details: serde_json::Value,
    link: String,
) -> Condition {
    Condition {
        rule,
        subject: subject.chars().take(200).collect(),
        severity,
        summary,
        details,
        link,
    }
}

/// A scheduled job failing `sync_failures` runs in a row, or not succeeding for twice its
/// period (at least two minutes) since its last success or, if it never succeeded, its first run.
pub fn sync(
    streaks: &[RunStreak],
    schedules: &BTreeMap<String, Schedule>,
    s: &AlertSettings,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for run in streaks {
        let Some(cron) = schedules.get(&run.job).and_then(|x| x.cron.as_ref()) else {
            continue;
        };
        let link = format!("/dashboard/schedules#{}", run.job);
        let n = i64::from(s.sync_failures);
        if run.runs >= n && run.failed >= n {
            let error = run.last_error.clone().unwrap_or_default();
            out.push(condition(
                "sync_failing",
                &run.job,
                "critical",
                format!(
                    "{} failed {n} runs in a row: {}",
                    run.job,
                    clip(&error, 300)
                ),
                json!({ "failedInARow": n, "lastError": error }),
                link.clone(),
            ));
        }
        let Some(period) = period(cron, now) else {
            continue;
        };
        let allowed = (period * 2).max(Duration::from_secs(120));
        let since = run.last_success.unwrap_or(run.first_run);
        let quiet = (now - since).to_std().unwrap_or_default();
        if quiet > allowed {
            let what = if run.last_success.is_some() {
                "has not succeeded"
            } else {
                "has never succeeded"
            };
            out.push(condition(
                "sync_stale",
                &run.job,
                "warning",
                format!(
                    "{} {what} for {} (it runs every {})",
                    run.job,
                    human(quiet),
                    human(period)
                ),
                json!({ "since": since, "quietSeconds": quiet.as_secs(), "periodSeconds": period.as_secs() }),
                link,
            ));
        }
    }
    out
}

/// The longest gap between a schedule's next few times.
fn period(cron: &cron::Schedule, now: DateTime<Utc>) -> Option<Duration> {
    let times: Vec<DateTime<Utc>> = cron.after(&now).take(4).collect();
    times
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .max()
}

/// Tasks of a queue that died in the window and are still dead.
pub fn dead(died: &[(String, u64)], s: &AlertSettings) -> Vec<Condition> {
    died.iter()
        .filter(|(_, n)| *n > 0)
        .map(|(queue, n)| {
            condition(
                "dead_letters",
                queue,
                "warning",
                format!(
                    "{n} task(s) of queue {queue} died in the last {} and wait in its dead letters",
                    human(s.window)
                ),
                json!({ "died": n, "windowSeconds": s.window.as_secs() }),
                format!("/dashboard/dead?queue={queue}"),
            )
        })
        .collect()
}

/// Per upstream over the window: its error rate, mean latency, whether it answers at all,
/// whether it refuses the credentials, and the share of time spent waiting out rate limits.
pub fn upstream(t: &Tally, s: &AlertSettings) -> Vec<Condition> {
    let mut out = Vec::new();
    let window = human(s.window);
    let link = "/dashboard#upstreams".to_owned();
    for (service, h) in t.services() {
        let unreachable = t.unreachable.get(&service).copied().unwrap_or(0);
        if unreachable >= 3 && h.errors >= h.calls {
            out.push(condition("upstream_unreachable", &service, "critical",
                format!("{service} is unreachable: {unreachable} of {} calls in the last {window} got no answer, none succeeded", h.calls),
                json!({ "calls": h.calls, "unreachable": unreachable }), link.clone()));
        } else if h.calls >= 10 && h.errors * 100 >= h.calls * i64::from(s.upstream_error_percent) {
            out.push(condition(
                "upstream_errors",
                &service,
                "warning",
                format!(
                    "{service}: {} of {} calls failed in the last {window} ({}%, threshold {}%)",
                    h.errors,
                    h.calls,
                    h.errors * 100 / h.calls,
                    s.upstream_error_percent
                ),
                json!({ "calls": h.calls, "errors": h.errors }),
                link.clone(),
            ));
        }
        let limit = i64::try_from(s.upstream_latency.as_millis()).unwrap_or(i64::MAX);
        if h.calls >= 5 && h.ms / h.calls >= limit {
            out.push(condition("upstream_slow", &service, "warning",
                format!("{service} is slow: its calls took {} on average in the last {window} (threshold {})",
                    human(Duration::from_millis((h.ms / h.calls) as u64)), human(s.upstream_latency)),
                json!({ "calls": h.calls, "meanMillis": h.ms / h.calls }), link.clone()));
        }
    }
    for (service, n) in &t.auth_failures {
        if *n >= 3 {
            out.push(condition("auth_failing", service, "critical",
                format!("{service} refused the credentials {n} times in the last {window}: check the key or token (`campaign-sync doctor` says which)"),
                json!({ "refused": n }), link.clone()));
        }
    }
    let window_ms = i64::try_from(s.window.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    for (service, waited) in &t.waits {
        if waited * 100 >= window_ms * i64::from(s.rate_limit_percent) {
            out.push(condition("rate_limited", service, "warning",
                format!("{service} rate limits: {} spent waiting in the last {window} ({}% of it, threshold {}%)",
                    human(Duration::from_millis(*waited as u64)), waited * 100 / window_ms, s.rate_limit_percent),
                json!({ "waitedMillis": waited }), link.clone()));
        }
    }
    out
}

/// A Slack install revoked or needing a reinstall; an active token that expires soon (it is
/// refreshed well before: one this close means refreshing fails).
pub fn installs(installs: &[Install], s: &AlertSettings, now: DateTime<Utc>) -> Vec<Condition> {
    let mut out = Vec::new();
    for i in installs {
        let name = i
            .team_name
            .clone()
            .unwrap_or_else(|| i.workspace_id.clone());
        let subject = format!("slack:{}", i.workspace_id);
        if i.status != "active" {
            let why = i.revoked_why.clone().unwrap_or_else(|| i.status.clone());
            out.push(condition("install_revoked", &subject, "critical",
                format!("the Slack install of {name} no longer works ({why}): install the app again from the dashboard"),
                json!({ "status": i.status, "why": why }), "/dashboard".to_owned()));
            continue;
        }
        let Some(expires) = i.expires_at else {
            continue;
        };
        let left = (expires - now).to_std().unwrap_or_default();
        if left < s.token_expiry {
            let when = if expires <= now {
                "has expired".to_owned()
            } else {
                format!("expires in {}", human(left))
            };
            out.push(condition(
                "token_expiring",
                &subject,
                "warning",
                format!("the Slack token of {name} {when} and was not refreshed"),
                json!({ "expiresAt": expires }),
                "/dashboard".to_owned(),
            ));
        }
    }
    out
}

/// An email request with recipients not sent long after it was due; Mailjet's webhook silent
/// while emails go out.
pub fn email(stuck: &[StuckRequest], evidence: (i64, bool), s: &AlertSettings) -> Vec<Condition> {
    let mut out: Vec<Condition> = stuck.iter().map(|r| {
        let error = r.last_error.clone().map(|e| format!(" (last error: {})", clip(&e, 200))).unwrap_or_default();
        condition("email_stuck", &r.request_id.to_string(), "warning",
            format!("email request {} of campaign {} has {} recipient(s) not sent since it was due at {}{error}",
                r.request_id, r.campaign_id, r.waiting, r.due_since.format("%Y-%m-%d %H:%M UTC")),
            json!({ "campaignId": r.campaign_id, "waiting": r.waiting, "dueSince": r.due_since }),
            format!("/dashboard/email-requests/{}", r.request_id))
    }).collect();
    let (sent, heard) = evidence;
    if sent >= i64::from(s.webhook_min_sends) && !heard {
        out.push(condition("webhook_silent", "mailjet", "warning",
            format!("{sent}+ emails were sent in the last {} but Mailjet's webhook delivered nothing: check the event URL in Mailjet's account settings",
                human(s.webhook_silence)),
            json!({ "sent": sent }), "/dashboard/webhooks".to_owned()));
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// `90s` → `1m 30s`, `2h`, `3d 4h`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts = [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if shown.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        shown.join(" ")
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
