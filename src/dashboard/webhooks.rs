//! *Webhooks*: intake per source and type over the last day, deliveries per hour, rejected
//! events with their reasons, and replaying one (checked again by today's rules).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Duration, DurationRound, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart::{self, Series};
use super::error::DashError;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::state::AppState;
use crate::store::{audit, dashboard as data, webhook_events};
use crate::webhooks::replay::{self, Replayed};

const HOURS: i32 = 24;
const PER_PAGE: i64 = 50;

/// Paging of the rejections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    before: Option<i64>,
    #[serde(default)]
    all: bool,
}

/// `GET /dashboard/webhooks`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    let rows = data::intake(&state.db, HOURS)
        .await
        .map_err(DashError::db)?;
    let mut totals: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for (_, source, kind, status, n) in &rows {
        *totals
            .entry((source.clone(), kind.clone(), status.clone()))
            .or_default() += n;
    }
    let intake: Vec<(String, String, String, i64)> = totals
        .into_iter()
        .map(|((s, k, o), n)| (s, k, o, n))
        .collect();
    let hourly: Vec<(chrono::DateTime<Utc>, String, i64)> =
        rows.into_iter().map(|(h, s, _, _, n)| (h, s, n)).collect();
    let rejections = webhook_events::list_rejections(&state.db, PER_PAGE, q.before, q.all)
        .await
        .map_err(DashError::db)?;
    let live = html! {
        div.grid { div.card { (hourly_chart(&hourly)) } }
        h2 { "Intake, the last 24 hours" }
        (intake_table(&intake))
        h2 { "Rejected events" @if !q.all { " not replayed yet" } }
        p { @if q.all { a href="/dashboard/webhooks" { "Show only those not replayed" } } @else { a href="/dashboard/webhooks?all=true" { "Show replayed ones too" } } }
        (rejection_table(&operator, &rejections))
        @if let Some(last) = rejections.last() { @if rejections.len() as i64 == PER_PAGE {
            p { a href=(format!("/dashboard/webhooks?before={}&all={}", last.id, q.all)) { "Older →" } }
        } }
    };
    let shell = Shell {
        title: "Webhooks",
        path: "/dashboard/webhooks",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, html! {}, live))
}

fn hourly_chart(hourly: &[(chrono::DateTime<Utc>, String, i64)]) -> Markup {
    let now = Utc::now()
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|_| Utc::now());
    let hours: Vec<chrono::DateTime<Utc>> = (0..HOURS)
        .rev()
        .map(|h| now - Duration::hours(i64::from(h)))
        .collect();
    let mut per_source: BTreeMap<String, Vec<f64>> = [
        "mailjet",
        "slack_events",
        "slack_interactions",
        "slack_commands",
    ]
    .into_iter()
    .map(|s| (s.to_owned(), vec![0.0; hours.len()]))
    .collect();
    for (hour, source, n) in hourly {
        if let (Some(i), Some(v)) = (
            hours.iter().position(|h| h == hour),
            per_source.get_mut(source),
        ) {
            v[i] += *n as f64;
        }
    }
    let labels: Vec<String> = hours
        .iter()
        .map(|h| h.format("%H:00 UTC").to_string())
        .collect();
    let series: Vec<Series<'_>> = per_source
        .iter()
        .map(|(s, v)| Series {
            name: s,
            values: v.clone(),
        })
        .collect();
    chart::lines(
        "Deliveries per hour, by source",
        &labels,
        &series,
        chart::count,
    )
}

fn intake_table(intake: &[(String, String, String, i64)]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Source" } th { "Type" } th { "Outcome" } th.num { "Events" } } }
        tbody {
            @if intake.is_empty() { (layout::empty(4, "No webhook event in the last 24 hours.")) }
            @for (source, kind, status, n) in intake { tr {
                td { (source) } td { code { (kind) } }
                td class=(if status == "failed" { "bad" } else { "" }) { (status) } td.num { (n) }
            } }
        }
    } } }
}

fn rejection_table(operator: &Operator, rejections: &[webhook_events::Rejection]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Received" } th { "Source" } th.num { "Position" } th { "Reason" } th.num { "Size" } th { "Replay" } } }
        tbody {
            @if rejections.is_empty() { (layout::empty(6, "No rejected event.")) }
            @for r in rejections { tr {
                td { (layout::time(r.received_at)) } td { (r.source) } td.num { (r.position) }
                td { span title=(r.reason) { (layout::short(&r.reason, 160)) } }
                td.num { (r.raw.len()) " B" }
                td {
                    @if let Some(at) = r.replayed_at { (r.replay_outcome.as_deref().unwrap_or("replayed")) " " (layout::time(at)) }
                    @else { (layout::button(operator, "/dashboard/webhooks/replay", "Replay", &[("id", &r.id.to_string())])) }
                }
            } }
        }
    } } }
}

/// The replay form.
#[derive(Debug, Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    id: i64,
}

/// `POST /dashboard/webhooks/replay`.
pub async fn replay(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<Form<ReplayForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, DashError> {
    let Form(form) =
        form.map_err(|e| DashError::BadRequest(format!("replay form: {}", e.body_text())))?;
    operator.may_act(&form.csrf)?;
    let outcome = replay::replay(&state.db, form.id)
        .await
        .map_err(DashError::db)?;
    let message = match &outcome {
        Replayed::Stored(event) => format!(
            "Rejection {} replayed: stored as event {event}, to be processed.",
            form.id
        ),
        Replayed::Duplicate => format!(
            "Rejection {}: the same event is already stored; nothing new.",
            form.id
        ),
        Replayed::StillRejected(why) => {
            format!("Rejection {} is still not an event: {why}", form.id)
        }
        Replayed::AlreadyReplayed => format!("Rejection {} was replayed before.", form.id),
        Replayed::NotFound => return Err(DashError::NotFound(format!("no rejection {}", form.id))),
    };
    let mut conn = state.db.acquire().await.map_err(DashError::db)?;
    audit::record(
        &mut conn,
        &operator.actor(),
        "webhook.replay",
        "webhook_rejection",
        &form.id.to_string(),
        serde_json::json!({ "outcome": format!("{outcome:?}") }),
    )
    .await
    .map_err(DashError::db)?;
    Ok(layout::done("/dashboard/webhooks", &message))
}
