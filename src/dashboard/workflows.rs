//! *Approvals* (every approval with its status, deadline and decision), *Analytics* (email
//! performance and team activity by period, top content, bottlenecks) and *Audit* (every
//! recorded operation, the dashboard's own actions first among the filters).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Duration, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart::{self, Series};
use super::error::DashError;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::state::AppState;
use crate::store::analytics::{self, Content, Subject};
use crate::store::approvals::{self, ApprovalView, ListFilter};
use crate::store::dashboard as data;
use crate::store::rollups::period::Period;

const PER_PAGE: i64 = 50;
const APPROVAL_STATUSES: [&str; 5] = [
    "pending",
    "approved",
    "rejected",
    "changes_requested",
    "expired",
];

/// Filters of the approvals.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    campaign: String,
    before: Option<String>,
}

/// `GET /dashboard/approvals`.
pub async fn approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<ApprovalQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    if !q.status.is_empty() && !APPROVAL_STATUSES.contains(&q.status.as_str()) {
        return Err(DashError::BadRequest(format!(
            "status must be one of {}",
            APPROVAL_STATUSES.join(", ")
        )));
    }
    if q.campaign.len() > 128 || q.before.as_ref().is_some_and(|b| b.len() > 200) {
        return Err(DashError::BadRequest(
            "campaign and before hold at most 128 and 200 characters".to_owned(),
        ));
    }
    let filter = ListFilter {
        campaign_id: Some(q.campaign.as_str()).filter(|c| !c.is_empty()),
        status: Some(q.status.as_str()).filter(|s| !s.is_empty()),
        before: q.before.as_deref(),
        limit: PER_PAGE,
    };
    let (rows, next) = approvals::list(&state.db, &filter)
        .await
        .map_err(DashError::db)?;
    let older = next.map(|next| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("status", &q.status)
            .append_pair("campaign", &q.campaign)
            .append_pair("before", &next)
            .finish();
        format!("/dashboard/approvals?{query}")
    });
    let live = html! {
        (approval_table(&rows))
        @if let Some(older) = &older { p { a href=(older) { "Older →" } } }
    };
    let shell = Shell {
        title: "Approvals",
        path: "/dashboard/approvals",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, approval_filters(&q), live))
}

fn approval_filters(q: &ApprovalQuery) -> Markup {
    html! {
        form.filters method="get" action="/dashboard/approvals" {
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in APPROVAL_STATUSES { option value=(s) selected[s == q.status] { (s) } }
            } }
            label { "Campaign id" input name="campaign" value=(q.campaign) maxlength="128"; }
            button type="submit" { "Filter" }
        }
    }
}

fn approval_table(rows: &[ApprovalView]) -> Markup {
    let now = Utc::now();
    html! { div.table-wrap { table {
        thead { tr { th { "Requested" } th { "Campaign" } th { "Stage" } th { "Approver" } th { "Deadline" } th { "Status" } th { "Decided" } th.num { "Reminders" } th { "Comment" } } }
        tbody {
            @if rows.is_empty() { (layout::empty(9, "No approval matches.")) }
            @for a in rows { tr {
                td { (layout::time(a.created_at)) }
                td { a href=(format!("/dashboard/campaigns/{}", a.campaign_id)) { (a.campaign_id) } }
                td { (a.stage) } td { (a.approver_id) }
                td class=(if a.status == "pending" && a.deadline < now { "bad" } else { "" }) { (layout::time(a.deadline)) }
                td { (a.status) }
                td { (layout::maybe_time(a.decided_at)) @if let Some(by) = &a.decided_by { br; span.muted { "by " (by) } } }
                td.num { (a.reminders_sent) }
                td { @if let Some(c) = &a.comment { (layout::short(c, 120)) } }
            } }
        }
    } } }
}

/// The analytics period.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    #[serde(default)]
    period: String,
}

/// What the analytics page shows.
struct Figures {
    email: Vec<analytics::EmailPeriod>,
    team: Vec<analytics::TeamPeriod>,
    top: Vec<analytics::Ranked>,
    templates: Vec<analytics::Ranked>,
    stuck: analytics::Bottlenecks,
}

async fn figures(state: &AppState, kind: Period) -> Result<Figures, sqlx::Error> {
    let today = Utc::now().date_naive();
    let span = match kind {
        Period::Daily => 30,
        Period::Weekly => 7 * 12,
        Period::Monthly => 365,
    };
    let from = today - Duration::days(span);
    let previous = kind.previous(kind.start_of(today));
    let min = state.settings.analytics.min_sample;
    let quiet = Utc::now()
        - Duration::from_std(state.settings.analytics.quiet_after).unwrap_or(Duration::days(3));
    Ok(Figures {
        email: analytics::email_series(&state.db, Subject::All, kind, from, today).await?,
        team: analytics::team_series(&state.db, Subject::All, kind, from, today).await?,
        top: analytics::top(&state.db, Content::Campaigns, kind, previous, min, 10).await?,
        templates: analytics::top(&state.db, Content::Templates, kind, previous, min, 10).await?,
        stuck: analytics::bottlenecks(
            &state.db,
            Utc::now() - Duration::days(30),
            Utc::now(),
            quiet,
        )
        .await?,
    })
}

/// `GET /dashboard/analytics`.
pub async fn analytics(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<AnalyticsQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    let kind = match q.period.as_str() {
        "" => Period::Daily,
        name => Period::parse(name).ok_or_else(|| {
            DashError::BadRequest("period must be daily, weekly or monthly".to_owned())
        })?,
    };
    let f = figures(&state, kind).await.map_err(DashError::db)?;
    let min = state.settings.analytics.min_sample;
    let live = html! {
        @if let Some(p) = f.email.last() { (headline(p)) }
        (analytics_charts(&f.email, &f.team))
        h2 { "Top campaigns, previous period (at least " (min) " delivered)" }
        (ranked(&f.top))
        h2 { "Top templates, previous period" }
        (ranked(&f.templates))
        h2 { "Bottlenecks" }
        (bottlenecks(&f.stuck))
    };
    let controls = html! {
        form.filters method="get" action="/dashboard/analytics" {
            label { "Period" select name="period" {
                @for p in Period::ALL { option value=(p.as_str()) selected[p == kind] { (p.as_str()) } }
            } }
            button type="submit" { "Show" }
        }
    };
    let shell = Shell {
        title: "Analytics",
        path: "/dashboard/analytics",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, controls, live))
}

fn headline(p: &analytics::EmailPeriod) -> Markup {
    html! { div.grid {
        div.card { p.figure { (format!("{:.1}", p.metrics.engagement_score)) } p.muted { "engagement score, period from " (p.period_start)
            @if let Some(c) = p.trends.engagement_score_change { " (" (format!("{c:+.1}")) " points)" } } }
        div.card { p.figure { (layout::percent(Some(p.metrics.open_rate))) } p.muted { "open rate" @if let Some(t) = p.trends.open_rate_trend { " (" (format!("{t:+.1}")) " %)" } } }
        div.card { p.figure { (layout::percent(Some(p.metrics.click_rate))) } p.muted { "click rate" @if let Some(t) = p.trends.click_rate_trend { " (" (format!("{t:+.1}")) " %)" } } }
    } }
}

fn analytics_charts(email: &[analytics::EmailPeriod], team: &[analytics::TeamPeriod]) -> Markup {
    let labels: Vec<String> = email.iter().map(|p| p.period_start.to_string()).collect();
    let series = |name, f: fn(&analytics::EmailPeriod) -> f64| Series {
        name,
        values: email.iter().map(f).collect(),
    };
    let rates = chart::lines(
        "Open and click rates, all campaigns",
        &labels,
        &[
            series("open rate", |p| p.metrics.open_rate),
            series("click rate", |p| p.metrics.click_rate),
        ],
        chart::ratio,
    );
    let volume = chart::lines(
        "Messages sent and delivered",
        &labels,
        &[
            series("sent", |p| p.metrics.sent as f64),
            series("delivered", |p| p.metrics.delivered as f64),
        ],
        chart::count,
    );
    let team_labels: Vec<String> = team.iter().map(|p| p.period_start.to_string()).collect();
    let activity = chart::lines(
        "Team activity",
        &team_labels,
        &[
            Series {
                name: "messages",
                values: team
                    .iter()
                    .map(|p| p.metrics.messages_posted as f64)
                    .collect(),
            },
            Series {
                name: "approvals decided",
                values: team
                    .iter()
                    .map(|p| p.metrics.approvals_processed as f64)
                    .collect(),
            },
        ],
        chart::count,
    );
    html! { div.grid { div.card { (rates) } div.card { (volume) } div.card { (activity) } } }
}

fn bottlenecks(stuck: &analytics::Bottlenecks) -> Markup {
    html! { div.grid {
        div.card { h2 { "Waiting longest" } ul {
            @for w in &stuck.waiting_longest { li { (w.campaign_id) " · " (w.stage) " · " (w.approver_id) ": " (layout::duration(w.waiting_seconds)) } }
            @if stuck.waiting_longest.is_empty() { li.muted { "No approval is waiting." } }
        } }
        div.card { h2 { "Slowest approvers (30 days)" } ul {
            @for s in &stuck.slowest_approvers { li { (s.name) ": " (layout::duration(s.average_response_time)) " over " (s.decided) ", " (s.pending) " pending" } }
            @if stuck.slowest_approvers.is_empty() { li.muted { "No decision in 30 days." } }
        } }
        div.card { h2 { "Quiet campaign channels" } ul {
            @for c in &stuck.quiet_campaigns { li { (c.name) " " code { (c.channel_id) } ": last message " (layout::maybe_time(c.last_message_at)) } }
            @if stuck.quiet_campaigns.is_empty() { li.muted { "None." } }
        } }
    } }
}

fn ranked(rows: &[analytics::Ranked]) -> maud::Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "#" } th { "Name" } th.num { "Delivered" } th.num { "Open rate" } th.num { "Click rate" } th.num { "Score" } } }
        tbody {
            @if rows.is_empty() { (layout::empty(6, "Nothing reached the minimum sample in that period.")) }
            @for (i, r) in rows.iter().enumerate() { tr {
                td { (i + 1) } td { (r.name) " " span.muted { "(" (r.id) ")" } } td.num { (r.metrics.delivered) }
                td.num { (layout::percent(Some(r.metrics.open_rate))) } td.num { (layout::percent(Some(r.metrics.click_rate))) }
                td.num { (format!("{:.1}", r.metrics.engagement_score)) }
            } }
        }
    } } }
}

/// Filters of the audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    before: Option<i64>,
}

/// `GET /dashboard/audit`.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    if q.actor.len() > 200 {
        return Err(DashError::BadRequest(
            "the actor filter holds at most 200 characters".to_owned(),
        ));
    }
    let rows = data::audit(
        &state.db,
        Some(q.actor.as_str()).filter(|a| !a.is_empty()),
        q.before,
        PER_PAGE,
    )
    .await
    .map_err(DashError::db)?;
    let controls = html! {
        form.filters method="get" action="/dashboard/audit" {
            label { "Actor starts with" select name="actor" {
                @for (value, label) in [("", "anyone"), ("dashboard:", "dashboard operators"), ("api", "the API"), ("cli", "the CLI"), ("worker", "the worker")] {
                    option value=(value) selected[value == q.actor] { (label) }
                }
            } }
            button type="submit" { "Filter" }
        }
    };
    let live = html! {
        div.table-wrap { table {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Subject" } th { "Request" } th { "Details" } } }
            tbody {
                @if rows.is_empty() { (layout::empty(6, "No audit row matches.")) }
                @for r in &rows { tr {
                    td { (layout::time(r.occurred_at)) } td { (r.actor) } td { code { (r.action) } }
                    td { (r.entity_type) " " (r.entity_id.as_deref().unwrap_or("")) }
                    td { @if let Some(id) = &r.request_id { code { (layout::short(id, 12)) } } }
                    td { code { (layout::short(&r.details.0.to_string(), 200)) } }
                } }
            }
        } }
        @if rows.len() as i64 == PER_PAGE { @if let Some(last) = rows.last() {
            p { a href=(format!("/dashboard/audit?actor={}&before={}", url::form_urlencoded::byte_serialize(q.actor.as_bytes()).collect::<String>(), last.id)) { "Older →" } }
        } }
    };
    let shell = Shell {
        title: "Audit",
        path: "/dashboard/audit",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, controls, live))
}
