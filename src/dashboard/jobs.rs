//! *Schedules* (every job's cron, last and next run, run history, "run now") and *Queues*
//! (sizes per state, pause and resume across every worker).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use maud::{Markup, html};
use serde::Deserialize;

use super::error::DashError;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::queue::{EnqueueOptions, Queue};
use crate::state::AppState;
use crate::store::audit;
use crate::store::dashboard::{self as data, Run};

/// Every queue of the built-in jobs.
pub fn all_queues(state: &AppState) -> Vec<Queue> {
    crate::jobs::builtin()
        .queues()
        .iter()
        .map(|name| Queue::new(state.redis.clone(), state.keys.prefix(), name))
        .collect()
}

fn queue_named(state: &AppState, name: &str) -> Result<Queue, DashError> {
    all_queues(state)
        .into_iter()
        .find(|q| q.keys().name() == name)
        .ok_or_else(|| DashError::NotFound(format!("no queue {name:?}")))
}

/// Filters of the run history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    #[serde(default)]
    job: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    offset: usize,
}

const RUNS_PER_PAGE: usize = 50;
const RUN_STATUSES: [&str; 4] = ["running", "succeeded", "failed", "skipped"];

/// `GET /dashboard/schedules`.
pub async fn schedules(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<RunFilter>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(filter) =
        query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    let jobs: Vec<String> = state.settings.schedules.keys().cloned().collect();
    if !filter.job.is_empty() && crate::jobs::find(&filter.job).is_none() {
        return Err(DashError::BadRequest(format!(
            "no job {:?}; jobs: {}",
            filter.job,
            jobs.join(", ")
        )));
    }
    if !filter.status.is_empty() && !RUN_STATUSES.contains(&filter.status.as_str()) {
        return Err(DashError::BadRequest(format!(
            "status must be one of {}",
            RUN_STATUSES.join(", ")
        )));
    }
    let latest = data::latest_runs(&state.db).await.map_err(DashError::db)?;
    let job = Some(filter.job.as_str()).filter(|j| !j.is_empty());
    let status = Some(filter.status.as_str()).filter(|s| !s.is_empty());
    let runs = data::runs(
        &state.db,
        job,
        status,
        filter.offset as i64,
        RUNS_PER_PAGE as i64,
    )
    .await
    .map_err(DashError::db)?;
    let scope = [
        ("job", filter.job.clone()),
        ("status", filter.status.clone()),
    ];
    let live = html! {
        h2 { "Schedules" }
        (schedule_table(&state, &operator, &latest))
        h2 { "Run history" @if !filter.job.is_empty() { " of " (filter.job) } }
        (run_table(&runs))
        (layout::pager("/dashboard/schedules", &scope, filter.offset, RUNS_PER_PAGE, runs.len()))
    };
    let shell = Shell {
        title: "Schedules",
        path: "/dashboard/schedules",
        operator: &operator,
    };
    Ok(layout::respond(
        &headers,
        shell,
        run_filters(&jobs, &filter),
        live,
    ))
}

fn schedule_table(state: &AppState, operator: &Operator, latest: &BTreeMap<String, Run>) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Job" } th { "Cron (UTC)" } th { "Last run" } th { "Outcome" } th.num { "Duration" } th { "Next run" } th { "Action" } } }
        tbody { @for (job, schedule) in &state.settings.schedules {
            @let last = latest.get(job);
            tr {
                td { a href=(format!("/dashboard/schedules?job={job}")) { (job) } br; span.muted { (crate::jobs::find(job).map(|j| j.purpose).unwrap_or("")) } }
                td { code { (schedule.expression) } }
                td { (layout::maybe_time(last.map(|r| r.started_at))) }
                td { (outcome(last)) }
                td.num { @if let Some(r) = last { (layout::duration(r.seconds())) } }
                td { (layout::maybe_time(crate::scheduler::next_run(schedule))) }
                td { (layout::button(operator, "/dashboard/schedules/run", "Run now", &[("job", job)])) }
            }
        } }
    } } }
}

fn run_filters(jobs: &[String], filter: &RunFilter) -> Markup {
    html! {
        form.filters method="get" action="/dashboard/schedules" {
            label { "Job" select name="job" {
                option value="" { "every job" }
                @for j in jobs { option value=(j) selected[*j == filter.job] { (j) } }
            } }
            label { "Outcome" select name="status" {
                option value="" { "any" }
                @for s in RUN_STATUSES { option value=(s) selected[s == filter.status] { (s) } }
            } }
            button type="submit" { "Filter" }
        }
    }
}

fn outcome(run: Option<&Run>) -> Markup {
    match run.map(|r| r.status.as_str()) {
        Some("succeeded") => html! { span.ok { "succeeded" } },
        Some("failed") => html! { span.bad { "failed" } },
        Some(other) => html! { span.warn { (other) } },
        None => html! { span.muted { "never ran" } },
    }
}

fn run_table(runs: &[Run]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Started" } th { "Job" } th { "Trigger" } th { "Outcome" } th.num { "Duration" } th.num { "Synced" } th.num { "Failed" } th { "Counts" } th { "Error" } } }
        tbody {
            @if runs.is_empty() { (layout::empty(9, "No runs match.")) }
            @for r in runs { tr {
                td { (layout::time(r.started_at)) } td { (r.job) } td { (r.trigger) } td { (outcome(Some(r))) }
                td.num { (layout::duration(r.seconds())) } td.num { (r.items_synced) } td.num { (r.items_failed) }
                td { @if r.counts.0.as_object().is_some_and(|o| !o.is_empty()) { code { (r.counts.0.to_string()) } } }
                td { @if let Some(e) = &r.error { span.bad title=(e) { (layout::short(e, 160)) } } }
            } }
        }
    } } }
}

/// A form naming a job.
#[derive(Debug, Deserialize)]
pub struct JobForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    job: String,
}

/// `POST /dashboard/schedules/run`: enqueues the job now (trigger `manual`), audited.
pub async fn run_now(
    State(state): State<AppState>,
    operator: Operator,
    Form(form): Form<JobForm>,
) -> Result<Response, DashError> {
    operator.may_act(&form.csrf)?;
    let registry = crate::jobs::builtin();
    let spec = registry
        .get(&form.job)
        .ok_or_else(|| DashError::BadRequest(format!("no job {:?}", form.job)))?;
    let queue = queue_named(&state, &spec.queue)?;
    let options = EnqueueOptions {
        trigger: Some("manual".to_owned()),
        ..EnqueueOptions::default()
    };
    let enqueued = queue
        .enqueue(&form.job, serde_json::Value::Null, options)
        .await
        .map_err(DashError::redis)?;
    let mut conn = state.db.acquire().await.map_err(DashError::db)?;
    let details = serde_json::json!({ "queue": spec.queue, "task": enqueued.id });
    audit::record(
        &mut conn,
        &operator.actor(),
        "job.run_now",
        "job",
        &form.job,
        details,
    )
    .await
    .map_err(DashError::db)?;
    Ok(layout::done(
        "/dashboard/schedules",
        &format!("Enqueued {} as task {}.", form.job, enqueued.id),
    ))
}

/// `GET /dashboard/queues`.
pub async fn queues(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
) -> Result<Response, DashError> {
    let registry = crate::jobs::builtin();
    let mut rows = Vec::new();
    for queue in all_queues(&state) {
        let counts = queue.counts().await.map_err(DashError::redis)?;
        let paused = queue.paused().await.map_err(DashError::redis)?;
        let by = paused
            .as_deref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok());
        rows.push((queue.keys().name().to_owned(), counts, paused.is_some(), by));
    }
    let live = html! {
        div.table-wrap { table {
            thead { tr { th { "Queue" } th { "Jobs" } th.num { "Waiting" } th.num { "In flight" } th.num { "Delayed" } th.num { "Dead" } th.num { "Succeeded" } th.num { "Retried" } th { "State" } th { "Action" } } }
            tbody { @for (name, c, paused, by) in &rows {
                tr {
                    td { (name) }
                    td { @for j in registry.jobs().filter(|j| &j.queue == name) { code { (j.name) } " " } }
                    td.num { (c.waiting) } td.num { (c.in_flight) } td.num { (c.delayed) }
                    td.num { a href=(format!("/dashboard/dead?queue={name}")) { (c.dead) } }
                    td.num { (c.counters.get("succeeded").copied().unwrap_or(0)) }
                    td.num { (c.counters.get("retried").copied().unwrap_or(0)) }
                    td {
                        @if *paused {
                            span.warn { "paused" }
                            @if let Some(b) = by { br; span.muted { "by " (b["by"].as_str().unwrap_or("?")) " " } (layout::time_ms(b["at_ms"].as_i64().unwrap_or(0))) }
                        } @else { span.ok { "running" } }
                    }
                    td {
                        @if *paused { (layout::button(&operator, "/dashboard/queues/resume", "Resume", &[("queue", name)])) }
                        @else { (layout::button(&operator, "/dashboard/queues/pause", "Pause", &[("queue", name)])) }
                    }
                }
            } }
        } }
        p.muted { "A paused queue keeps accepting tasks; no worker takes one until it is resumed. Tasks in flight finish." }
    };
    let shell = Shell {
        title: "Queues",
        path: "/dashboard/queues",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, html! {}, live))
}

/// A form naming a queue.
#[derive(Debug, Deserialize)]
pub struct QueueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    queue: String,
}

/// `POST /dashboard/queues/pause`.
pub async fn pause(
    State(state): State<AppState>,
    operator: Operator,
    Form(form): Form<QueueForm>,
) -> Result<Response, DashError> {
    operator.may_act(&form.csrf)?;
    let queue = queue_named(&state, &form.queue)?;
    queue
        .pause(&operator.session.name)
        .await
        .map_err(DashError::redis)?;
    record(&state, &operator, "queue.pause", &form.queue).await?;
    Ok(layout::done(
        "/dashboard/queues",
        &format!(
            "Paused queue {}: workers take no new task from it.",
            form.queue
        ),
    ))
}

/// `POST /dashboard/queues/resume`.
pub async fn resume(
    State(state): State<AppState>,
    operator: Operator,
    Form(form): Form<QueueForm>,
) -> Result<Response, DashError> {
    operator.may_act(&form.csrf)?;
    let queue = queue_named(&state, &form.queue)?;
    let was = queue.resume().await.map_err(DashError::redis)?;
    record(&state, &operator, "queue.resume", &form.queue).await?;
    let message = if was {
        format!("Resumed queue {}.", form.queue)
    } else {
        format!("Queue {} was not paused.", form.queue)
    };
    Ok(layout::done("/dashboard/queues", &message))
}

async fn record(
    state: &AppState,
    operator: &Operator,
    action: &str,
    queue: &str,
) -> Result<(), DashError> {
    let mut conn = state.db.acquire().await.map_err(DashError::db)?;
    audit::record(
        &mut conn,
        &operator.actor(),
        action,
        "queue",
        queue,
        serde_json::json!({}),
    )
    .await
    .map_err(DashError::db)
}
