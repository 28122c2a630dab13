//! *Email requests*: each request's progress by recipient status, a search of its recipients by
//! status and address, and cancelling it (pending recipients become `cancelled`; in-flight
//! ones finish).

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::chart;
use super::error::DashError;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::state::AppState;
use crate::store::dashboard::{self as data, RequestProgress};
use crate::store::email_requests::{REQUEST_STATUSES, SEND_STATUSES};

const PER_PAGE: usize = 50;
const COLOURS: [(&str, &str); 7] = [
    ("sent", "#1b7a3a"),
    ("sending", "#1f5fbf"),
    ("pending", "#9aa6b2"),
    ("suppressed", "#8a5a00"),
    ("failed", "#b3261e"),
    ("dead", "#5f1410"),
    ("cancelled", "#6b3fa0"),
];

/// Filters of the list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    campaign: String,
    #[serde(default)]
    offset: usize,
}

fn progress(r: &RequestProgress) -> Markup {
    let parts: Vec<(&str, i64, &str)> = COLOURS
        .iter()
        .map(|(s, c)| (*s, r.counts.0.get(*s).copied().unwrap_or(0), *c))
        .collect();
    let label: Vec<String> = parts
        .iter()
        .filter(|p| p.1 > 0)
        .map(|p| format!("{} {}", p.1, p.0))
        .collect();
    let label = if label.is_empty() {
        "no recipients".to_owned()
    } else {
        label.join(", ")
    };
    html! { (chart::parts_bar(&label, &parts)) " " span.muted { (label) } }
}

/// `GET /dashboard/email-requests`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    if !q.status.is_empty() && !REQUEST_STATUSES.contains(&q.status.as_str()) {
        return Err(DashError::BadRequest(format!(
            "status must be one of {}",
            REQUEST_STATUSES.join(", ")
        )));
    }
    if q.campaign.len() > 128 {
        return Err(DashError::BadRequest(
            "a campaign id holds at most 128 characters".to_owned(),
        ));
    }
    let status = Some(q.status.as_str()).filter(|s| !s.is_empty());
    let campaign = Some(q.campaign.as_str()).filter(|s| !s.is_empty());
    let rows = data::requests(
        &state.db,
        status,
        campaign,
        q.offset as i64,
        PER_PAGE as i64,
    )
    .await
    .map_err(DashError::db)?;
    let scope = [
        ("status", q.status.clone()),
        ("campaign", q.campaign.clone()),
    ];
    let live = html! {
        (request_table(&rows))
        (layout::pager("/dashboard/email-requests", &scope, q.offset, PER_PAGE, rows.len()))
    };
    let shell = Shell {
        title: "Email requests",
        path: "/dashboard/email-requests",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, list_filters(&q), live))
}

fn list_filters(q: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/dashboard/email-requests" {
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in REQUEST_STATUSES { option value=(s) selected[s == q.status] { (s) } }
            } }
            label { "Campaign id" input name="campaign" value=(q.campaign) maxlength="128"; }
            button type="submit" { "Filter" }
        }
    }
}

fn request_table(rows: &[RequestProgress]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Accepted" } th { "Request" } th { "Campaign" } th.num { "Template" } th.num { "Recipients" } th { "Status" } th { "Progress" } } }
        tbody {
            @if rows.is_empty() { (layout::empty(7, "No email request matches.")) }
            @for r in rows { tr {
                td { (layout::time(r.created_at)) }
                td { a href=(format!("/dashboard/email-requests/{}", r.id)) { code { (r.id.to_string()[..8]) "…" } } @if r.test_mode { " " span.warn { "test" } } }
                td { a href=(format!("/dashboard/campaigns/{}", r.campaign_id)) { (r.campaign_id) } }
                td.num { (r.template_id) } td.num { (r.recipient_count) }
                td { (status(&r.status)) }
                td { (progress(r)) }
            } }
        }
    } } }
}

fn status(s: &str) -> Markup {
    match s {
        "completed" => html! { span.ok { (s) } },
        "cancelled" => html! { span.warn { (s) } },
        _ => html! { span { (s) } },
    }
}

/// Recipient search.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    offset: usize,
}

fn parse_id(id: &str) -> Result<Uuid, DashError> {
    Uuid::parse_str(id)
        .map_err(|_| DashError::BadRequest(format!("{id:?} is not a request id (a UUID)")))
}

/// `GET /dashboard/email-requests/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let id = parse_id(&id)?;
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    if !q.status.is_empty() && !SEND_STATUSES.contains(&q.status.as_str()) {
        return Err(DashError::BadRequest(format!(
            "status must be one of {}",
            SEND_STATUSES.join(", ")
        )));
    }
    if q.email.len() > 320 {
        return Err(DashError::BadRequest(
            "an address holds at most 320 characters".to_owned(),
        ));
    }
    let r = data::request(&state.db, id)
        .await
        .map_err(DashError::db)?
        .ok_or_else(|| DashError::NotFound(format!("no email request {id}")))?;
    let status = Some(q.status.as_str()).filter(|s| !s.is_empty());
    let email = Some(q.email.trim()).filter(|s| !s.is_empty());
    let recipients = data::recipients(
        &state.db,
        id,
        status,
        email,
        q.offset as i64,
        PER_PAGE as i64,
    )
    .await
    .map_err(DashError::db)?;
    let base = format!("/dashboard/email-requests/{id}");
    let scope = [("status", q.status.clone()), ("email", q.email.clone())];
    let live = html! {
        (summary(&r))
        h2 { "Recipients" }
        (recipient_table(&recipients))
        (layout::pager(&base, &scope, q.offset, PER_PAGE, recipients.len()))
    };
    let title = format!("Email request {}", &id.to_string()[..8]);
    let shell = Shell {
        title: &title,
        path: "/dashboard/email-requests",
        operator: &operator,
    };
    Ok(layout::respond(
        &headers,
        shell,
        detail_controls(&operator, &r, &base, &q),
        live,
    ))
}

fn detail_controls(
    operator: &Operator,
    r: &RequestProgress,
    base: &str,
    q: &DetailQuery,
) -> Markup {
    let open = !matches!(r.status.as_str(), "completed" | "cancelled");
    html! {
        p { a href="/dashboard/email-requests" { "← All email requests" } }
        @if open {
            form.inline method="post" action=(format!("{base}/cancel")) data-confirm="Cancel this request? Pending recipients will not be sent." {
                (layout::csrf(operator))
                button.danger type="submit" { "Cancel request" }
            }
        }
        form.filters method="get" action=(base) {
            label { "Recipient status" select name="status" {
                option value="" { "any" }
                @for s in SEND_STATUSES { option value=(s) selected[s == q.status] { (s) } }
            } }
            label { "Address starts with" input name="email" value=(q.email) maxlength="320" autocomplete="off"; }
            button type="submit" { "Search" }
        }
    }
}

fn summary(r: &RequestProgress) -> Markup {
    html! { div.grid { div.card {
        p { "Campaign " a href=(format!("/dashboard/campaigns/{}", r.campaign_id)) { (r.campaign_id) } ", template " (r.template_id) @if r.test_mode { " (test mode)" } }
        p { "Accepted " (layout::time(r.created_at)) @if let Some(at) = r.scheduled_at { ", scheduled for " (layout::time(at)) } @if let Some(at) = r.completed_at { ", finished " (layout::time(at)) } }
        p { "Status: " (status(&r.status)) " · " (r.recipient_count) " recipients" }
        p { (progress(r)) }
        table { tbody { @for s in SEND_STATUSES { tr { td { (s) } td.num { (r.counts.0.get(s).copied().unwrap_or(0)) } } } } }
    } } }
}

fn recipient_table(recipients: &[data::Recipient]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Address" } th { "Status" } th.num { "Attempts" } th { "Sent" } th { "Last change" } th { "Last error" } } }
        tbody {
            @if recipients.is_empty() { (layout::empty(6, "No recipient matches.")) }
            @for p in recipients { tr {
                td { (layout::mask(&p.email)) }
                td { (p.status) } td.num { (p.attempts) }
                td { (layout::maybe_time(p.sent_at)) } td { (layout::time(p.updated_at)) }
                td { @if let Some(e) = &p.last_error { span title=(e) { (layout::short(e, 120)) } } }
            } }
        }
    } } }
}

/// The cancel form.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /dashboard/email-requests/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Result<Response, DashError> {
    operator.may_act(&form.csrf)?;
    let id = parse_id(&id)?;
    let outcome = crate::store::email_requests::cancel(&state.db, id, &operator.actor())
        .await
        .map_err(DashError::db)?
        .ok_or_else(|| DashError::NotFound(format!("no email request {id}")))?;
    let message = if outcome.changed {
        format!(
            "Cancelled: {} pending recipients will not be sent; {} in flight finish.",
            outcome.cancelled_recipients, outcome.in_flight
        )
    } else {
        format!(
            "The request was already {}; nothing changed.",
            outcome.status
        )
    };
    Ok(layout::done(
        &format!("/dashboard/email-requests/{id}"),
        &message,
    ))
}
