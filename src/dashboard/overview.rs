//! *Overview*: throughput and failures per queue over the last six hours, queue depths, and
//! upstream health (calls, error rate and latency per Mailjet and Slack endpoint, rate-limit
//! waits, token expiry).

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::chart::{self, Series};
use super::error::DashError;
use super::jobs::all_queues;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::state::AppState;
use crate::telemetry::timeline::{self, Health, Tally};

/// Minutes the charts cover, and minutes per point.
const WINDOW_MIN: i64 = 360;
const BUCKET_MIN: i64 = 15;
/// Minutes the upstream table covers.
const TABLE_MIN: i64 = 60;

/// `GET /dashboard`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
) -> Result<Response, DashError> {
    let live = html! {
        (queue_section(&state).await?)
        (upstream_section(&state).await?)
    };
    let shell = Shell {
        title: "Overview",
        path: "/dashboard",
        operator: &operator,
    };
    let install = slack_section(&state, &operator).await?;
    Ok(layout::respond(&headers, shell, install, live))
}

/// The Slack credential: static, or OAuth with its install state and the install link.
async fn slack_section(state: &AppState, operator: &Operator) -> Result<Markup, DashError> {
    let s = &state.settings;
    if s.slack.client_id.is_none() || s.security.encryption_keys.is_none() {
        return Ok(html! {});
    }
    let rows = crate::store::oauth_tokens::slack_credentials(&state.db)
        .await
        .map_err(DashError::db)?;
    let row = rows.iter().find(|r| r.workspace_id == s.slack.workspace());
    Ok(html! {
        h2 { "Slack" }
        @match row {
            None => p.bad role="alert" { "The Slack app is not installed: Slack jobs fail until an admin installs it." },
            Some(r) if r.status == "active" => p {
                "Installed in " strong { (r.team_name.as_deref().unwrap_or(&r.workspace_id)) } " (" code { (r.workspace_id) } ")"
                @if let Some(by) = &r.installed_by { " by " (by) }
                @if let Some(at) = r.installed_at { " on " (layout::time(at)) }
                "; sealed with key " code { (r.key_id) } "."
            },
            Some(r) => p.bad role="alert" {
                "The Slack credential of " code { (r.workspace_id) } " is " strong { (r.status.replace('_', " ")) }
                @if let Some(why) = &r.revoked_why { " (" (why) ")" }
                ": Slack jobs fail until it is installed again."
            },
        }
        @if operator.session.is_admin() { p { a.button href="/slack/install" { "Install or reinstall the Slack app" } } }
    })
}

fn bucket_labels(minutes: &[i64]) -> Vec<String> {
    minutes
        .chunks(BUCKET_MIN as usize)
        .filter_map(|c| c.first())
        .map(|m| {
            DateTime::<Utc>::from_timestamp(m * 60, 0)
                .map(|t| t.format("%H:%M UTC").to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn bucketed(values: &[f64]) -> Vec<f64> {
    values
        .chunks(BUCKET_MIN as usize)
        .map(|c| c.iter().sum())
        .collect()
}

async fn queue_section(state: &AppState) -> Result<Markup, DashError> {
    let mut rows = Vec::new();
    let mut charts = Vec::new();
    for queue in all_queues(state) {
        let name = queue.keys().name().to_owned();
        let counts = queue.counts().await.map_err(DashError::redis)?;
        let paused = queue.paused().await.map_err(DashError::redis)?.is_some();
        let timeline = queue.timeline(WINDOW_MIN).await.map_err(DashError::redis)?;
        let minutes: Vec<i64> = timeline.iter().map(|(at, _)| at / 60_000).collect();
        let get = |f: &str| -> Vec<f64> {
            timeline
                .iter()
                .map(|(_, m)| *m.get(f).unwrap_or(&0) as f64)
                .collect()
        };
        let ok = bucketed(&get("succeeded"));
        let failed: Vec<f64> = bucketed(&get("retried"))
            .iter()
            .zip(bucketed(&get("dead")))
            .map(|(a, b)| a + b)
            .collect();
        let done_hour: f64 = get("succeeded").iter().rev().take(60).sum();
        let failed_window: f64 = get("retried").iter().chain(get("dead").iter()).sum();
        charts.push(chart::lines(
            &format!("Queue {name}: tasks per 15 minutes"),
            &bucket_labels(&minutes),
            &[
                Series {
                    name: "succeeded",
                    values: ok,
                },
                Series {
                    name: "failed (retried or dead)",
                    values: failed,
                },
            ],
            chart::count,
        ));
        rows.push((name, counts, paused, done_hour, failed_window));
    }
    Ok(html! {
        h2 { "Queues" }
        div.table-wrap { table {
            thead { tr { th { "Queue" } th.num { "Waiting" } th.num { "In flight" } th.num { "Delayed" } th.num { "Dead" } th.num { "Succeeded (1 h)" } th.num { "Failed attempts (6 h)" } th { "State" } } }
            tbody {
                @for (name, c, paused, done, failed) in &rows {
                    tr {
                        td { a href="/dashboard/queues" { (name) } }
                        td.num { (c.waiting) } td.num { (c.in_flight) } td.num { (c.delayed) }
                        td.num { @if c.dead > 0 { a.bad href=(format!("/dashboard/dead?queue={name}")) { (c.dead) } } @else { "0" } }
                        td.num { (done) } td.num { (failed) }
                        td { @if *paused { span.warn { "paused" } } @else { span.ok { "running" } } }
                    }
                }
            }
        } }
        div.grid { @for c in charts { div.card { (c) } } }
    })
}

async fn upstream_section(state: &AppState) -> Result<Markup, DashError> {
    let mut conn = state.redis.clone();
    let timeline = timeline::read(&mut conn, state.keys.prefix(), WINDOW_MIN)
        .await
        .map_err(DashError::redis)?;
    let Tally {
        endpoints, waits, ..
    } = timeline::tally(&timeline[timeline.len().saturating_sub(TABLE_MIN as usize)..]);
    let expiry = token_expiry(state).await;
    Ok(html! {
        h2 { "Upstreams (last hour)" }
        (endpoint_table(&endpoints))
        div.grid {
            div.card { (latency_chart(&timeline)) }
            div.card { (waits_and_expiry(&waits, &expiry)) }
        }
    })
}

fn endpoint_table(endpoints: &BTreeMap<(String, String), Health>) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Service" } th { "Endpoint" } th.num { "Calls" } th.num { "Error rate" } th.num { "Mean latency" } } }
        tbody {
            @if endpoints.is_empty() { (layout::empty(5, "No upstream calls in the last hour.")) }
            @for ((service, endpoint), h) in endpoints {
                @let rate = if h.calls == 0 { 0.0 } else { h.errors as f64 / h.calls as f64 };
                tr {
                    td { (service) } td { code { (endpoint) } } td.num { (h.calls) }
                    td.num class=(if rate >= 0.05 { "bad" } else { "" }) { (layout::percent(Some(rate))) }
                    td.num { (layout::duration(h.ms as f64 / h.calls.max(1) as f64 / 1000.0)) }
                }
            }
        }
    } } }
}

fn waits_and_expiry(waits: &BTreeMap<String, i64>, expiry: &[(String, f64)]) -> Markup {
    html! {
        h2 { "Rate-limit waits (last hour)" }
        @if waits.is_empty() { p.muted { "None." } }
        ul { @for (service, ms) in waits {
            li { (service) ": " (layout::duration(*ms as f64 / 1000.0)) " (" (layout::percent(Some(*ms as f64 / 3_600_000.0))) " of the hour)" }
        } }
        h2 { "Token expiry" }
        @if expiry.is_empty() { p.muted { "No worker reported a token with an expiry (static tokens do not expire)." } }
        ul { @for (service, secs) in expiry {
            li class=(if *secs < 3600.0 { "bad" } else { "" }) { (service) ": expires in " (layout::duration(*secs)) }
        } }
    }
}

fn latency_chart(timeline: &[(i64, HashMap<String, i64>)]) -> Markup {
    let minutes: Vec<i64> = timeline.iter().map(|(m, _)| *m).collect();
    let mut per_service: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (i, (_, fields)) in timeline.iter().enumerate() {
        for (field, n) in fields {
            let parts: Vec<&str> = field.split('|').collect();
            if let [service, _, what] = parts.as_slice() {
                let entry = per_service
                    .entry((*service).to_owned())
                    .or_insert_with(|| (vec![0.0; timeline.len()], vec![0.0; timeline.len()]));
                match *what {
                    "ms" => entry.0[i] += *n as f64,
                    "calls" => entry.1[i] += *n as f64,
                    _ => {}
                }
            }
        }
    }
    let series: Vec<Series<'_>> = per_service
        .iter()
        .map(|(service, (ms, calls))| {
            let values = ms
                .chunks(BUCKET_MIN as usize)
                .zip(calls.chunks(BUCKET_MIN as usize))
                .map(|(m, c)| {
                    let calls: f64 = c.iter().sum();
                    if calls == 0.0 {
                        0.0
                    } else {
                        m.iter().sum::<f64>() / calls
                    }
                })
                .collect();
            Series {
                name: service,
                values,
            }
        })
        .collect();
    chart::lines(
        "Mean upstream latency per 15 minutes",
        &bucket_labels(&minutes),
        &series,
        chart::millis,
    )
}

/// Seconds until each service's token expires, as the workers last published it.
async fn token_expiry(state: &AppState) -> Vec<(String, f64)> {
    let mut conn = state.redis.clone();
    let mut texts = crate::queue::metrics::collect_published(&mut conn, state.keys.prefix()).await;
    texts.push(state.prometheus.render());
    let mut found: BTreeMap<String, f64> = BTreeMap::new();
    for text in &texts {
        for line in text
            .lines()
            .filter(|l| l.starts_with("upstream_token_expires_in_seconds{"))
        {
            let service = line
                .split("service=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("unknown");
            if let Some(secs) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                let entry = found.entry(service.to_owned()).or_insert(secs);
                *entry = entry.min(secs);
            }
        }
    }
    found.into_iter().collect()
}
