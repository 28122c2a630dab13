//! *Campaigns*: every campaign with its latest statistics and its mapping to Mailjet and Slack;
//! one campaign's open, click and bounce rates over time from the statistics history, and its
//! engagement score.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::chart::{self, Series};
use super::error::DashError;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::state::AppState;
use crate::store::campaigns::{self, CampaignView, StatisticsView};
use crate::store::dashboard as data;

const PER_PAGE: i64 = 50;
const HISTORY_DAYS: i32 = 90;

/// Filters of the list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    active: String,
    #[serde(default)]
    offset: usize,
}

/// `GET /dashboard/campaigns`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    let active = match q.active.as_str() {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            return Err(DashError::BadRequest(format!(
                "active must be yes or no, not {other:?}"
            )));
        }
    };
    if q.q.len() > 200 {
        return Err(DashError::BadRequest(
            "the search holds at most 200 characters".to_owned(),
        ));
    }
    let found = match q.q.trim() {
        "" => None,
        text => Some(
            data::find_campaigns(&state.db, text, PER_PAGE)
                .await
                .map_err(DashError::db)?,
        ),
    };
    let page = (q.offset as i64 / PER_PAGE) + 1;
    let (items, total) = campaigns::list(&state.db, active, page, PER_PAGE)
        .await
        .map_err(DashError::db)?;
    let live = html! {
        @if let Some(found) = &found { (matches(q.q.trim(), found)) }
        p { (total) " campaigns." }
        (table(&items))
        (layout::pager("/dashboard/campaigns", &[("active", q.active.clone())], q.offset, PER_PAGE as usize, items.len()))
    };
    let shell = Shell {
        title: "Campaigns",
        path: "/dashboard/campaigns",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, filters(&q), live))
}

fn filters(q: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/dashboard/campaigns" {
            label { "Find (id or name)" input name="q" value=(q.q) maxlength="200"; }
            label { "Active" select name="active" {
                option value="" { "all" }
                option value="yes" selected[q.active == "yes"] { "active" }
                option value="no" selected[q.active == "no"] { "inactive" }
            } }
            button type="submit" { "Show" }
        }
    }
}

fn matches(text: &str, found: &[(String, String)]) -> Markup {
    html! {
        h2 { "Matching “" (text) "”" }
        ul { @for (id, name) in found { li { a href=(format!("/dashboard/campaigns/{id}")) { (name) } " " span.muted { "(" (id) ")" } } } }
        @if found.is_empty() { p.muted { "No campaign matches." } }
    }
}

fn table(items: &[CampaignView]) -> Markup {
    html! { div.table-wrap { table {
        thead { tr { th { "Campaign" } th { "Status" } th { "Mailjet" } th { "Slack channel" } th.num { "Sent" } th.num { "Open rate" } th.num { "Click rate" } th.num { "Engagement" } th { "Synced" } } }
        tbody {
            @if items.is_empty() { (layout::empty(9, "No campaigns.")) }
            @for c in items { tr {
                td { a href=(format!("/dashboard/campaigns/{}", c.id)) { (c.name) } br; span.muted { (c.id) } }
                td { (c.status) @if !c.active { " " span.muted { "(inactive)" } } }
                td { @if let Some(m) = c.mailjet_campaign_id { (m) } @else { span.muted { "not mapped" } } }
                td { @if let Some(s) = &c.slack_channel { code { (s) } } @else { span.muted { "none" } } }
                @if let Some(s) = &c.latest_statistics {
                    td.num { (s.sent) } td.num { (layout::percent(Some(s.open_rate))) } td.num { (layout::percent(Some(s.click_rate))) } td.num { (format!("{:.1}", s.engagement_score)) }
                } @else { td.num { "—" } td.num { "—" } td.num { "—" } td.num { "—" } }
                td { (layout::maybe_time(c.last_synced)) }
            } }
        }
    } } }
}

/// `GET /dashboard/campaigns/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    if !crate::store::campaigns::validate_id(&id).is_empty() {
        return Err(DashError::BadRequest(format!(
            "{id:?} is not a campaign id"
        )));
    }
    let c = campaigns::get(&state.db, &id)
        .await
        .map_err(DashError::db)?
        .ok_or_else(|| DashError::NotFound(format!("no campaign {id}")))?;
    let history = data::stats_history(&state.db, &id, HISTORY_DAYS)
        .await
        .map_err(DashError::db)?;
    let live = html! {
        div.grid { (mapping(&c)) @if let Some(s) = &c.latest_statistics { (latest(s)) } }
        @if history.is_empty() { (layout::none_yet("No statistics history yet: sync_mailjet_stats records a snapshot each run.")) }
        @else { (charts(&history)) }
    };
    let back = html! { p { a href="/dashboard/campaigns" { "← All campaigns" } } };
    let shell = Shell {
        title: &c.name,
        path: "/dashboard/campaigns",
        operator: &operator,
    };
    Ok(layout::respond(&headers, shell, back, live))
}

fn mapping(c: &CampaignView) -> Markup {
    html! { div.card {
        p { "Status " b { (c.status) } @if !c.active { " (inactive)" } }
        p { "Mailjet campaign: " @if let Some(m) = c.mailjet_campaign_id { (m) } @else { span.muted { "not mapped" } } }
        p { "Slack channel: " @if let Some(s) = &c.slack_channel { code { (s) } } @else { span.muted { "none" } } }
        p { "Statistics synced " (layout::maybe_time(c.last_synced)) }
        p { a href=(format!("/dashboard/email-requests?campaign={}", c.id)) { "Email requests of this campaign" } " · " a href=(format!("/dashboard/approvals?campaign={}", c.id)) { "Approvals" } }
    } }
}

fn latest(s: &StatisticsView) -> Markup {
    html! { div.card {
        p.figure { (format!("{:.1}", s.engagement_score)) } p.muted { "engagement score" }
        table { tbody {
            tr { td { "Sent" } td.num { (s.sent) } } tr { td { "Delivered" } td.num { (s.delivered) } }
            tr { td { "Opened" } td.num { (s.opened) " (" (layout::percent(Some(s.open_rate))) ")" } }
            tr { td { "Clicked" } td.num { (s.clicked) " (" (layout::percent(Some(s.click_rate))) ")" } }
            tr { td { "Bounced" } td.num { (s.bounced) } } tr { td { "Spam" } td.num { (s.spam) } } tr { td { "Unsubscribed" } td.num { (s.unsubscribed) } }
        } }
        p.muted { "as of " (layout::time(s.recorded_at)) }
    } }
}

fn charts(history: &[data::StatsPoint]) -> Markup {
    let labels: Vec<String> = history
        .iter()
        .map(|p| p.day.format("%Y-%m-%d").to_string())
        .collect();
    let rates = chart::lines(
        "Open, click and bounce rates by day (last snapshot of each day)",
        &labels,
        &[
            Series {
                name: "open rate",
                values: history.iter().map(|p| p.open_rate).collect(),
            },
            Series {
                name: "click rate",
                values: history.iter().map(|p| p.click_rate).collect(),
            },
            Series {
                name: "bounce rate",
                values: history.iter().map(data::StatsPoint::bounce_rate).collect(),
            },
        ],
        chart::ratio,
    );
    let score = chart::lines(
        "Engagement score by day",
        &labels,
        &[Series {
            name: "engagement score",
            values: history.iter().map(|p| p.engagement_score).collect(),
        }],
        |v| format!("{v:.0}"),
    );
    html! { div.grid { div.card { (rates) } div.card { (score) } } }
}
