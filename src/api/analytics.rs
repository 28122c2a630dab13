//! `/api/analytics/…` and `/api/campaigns/{id}/metrics`: rolled-up email and team figures per
//! day, ISO week or month with their trends, top content, bottlenecks, and the revenue the
//! Campaign Manager reports (`PUT /api/campaigns/{id}/revenue/{date}`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, query_error};
use super::input::{check_fields, check_path_id, db_error};
use crate::state::AppState;
use crate::store::analytics::{
    self, Bottlenecks, Content, EmailPeriod, Ranked, Snapshot, Subject, TeamPeriod,
};
use crate::store::rollups::period::Period;
use crate::store::validate::FieldError;

/// Most periods one answer holds.
const MAX_PERIODS: i64 = 400;

/// A window of periods.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct WindowQuery {
    /// `daily` (UTC days), `weekly` (ISO weeks, from Monday) or `monthly`; default `daily`.
    #[param(pattern = "^(daily|weekly|monthly)$")]
    period: Option<String>,
    /// First day (YYYY-MM-DD; its period is included); default 30 days, 12 weeks or 12 months before `to`.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day (YYYY-MM-DD; its period is included); default today (UTC). At most 400 periods from `from`.
    #[param(format = Date)]
    to: Option<String>,
}

/// A window of periods, for everyone or one campaign.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TeamQuery {
    /// `daily` (UTC days), `weekly` (ISO weeks, from Monday) or `monthly`; default `daily`.
    #[param(pattern = "^(daily|weekly|monthly)$")]
    period: Option<String>,
    /// First day (YYYY-MM-DD; its period is included); default 30 days, 12 weeks or 12 months before `to`.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day (YYYY-MM-DD; its period is included); default today (UTC). At most 400 periods from `from`.
    #[param(format = Date)]
    to: Option<String>,
    /// One campaign's figures (its channels' messages and its approvals) instead of everyone's.
    #[param(pattern = r"^[A-Za-z0-9_.:-]{1,128}$")]
    campaign_id: Option<String>,
}

/// A window of periods and a page of the statistics history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct MetricsQuery {
    /// `daily` (UTC days), `weekly` (ISO weeks, from Monday) or `monthly`; default `daily`.
    #[param(pattern = "^(daily|weekly|monthly)$")]
    period: Option<String>,
    /// First day (YYYY-MM-DD; its period is included); default 30 days, 12 weeks or 12 months before `to`.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day (YYYY-MM-DD; its period is included); default today (UTC). At most 400 periods from `from`.
    #[param(format = Date)]
    to: Option<String>,
    /// Snapshots recorded before this time (`nextHistoryBefore` of the previous answer).
    #[param(format = DateTime)]
    history_before: Option<String>,
    /// Snapshots per answer, 0–1000 (default 100).
    #[param(minimum = 0, maximum = 1000)]
    history_limit: Option<i64>,
}

/// The window fields every query has.
trait Windowed {
    fn fields(&self) -> (Option<&str>, Option<&str>, Option<&str>);
}

macro_rules! windowed {
    ($($t:ty),*) => {$(
        impl Windowed for $t {
            fn fields(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
                (self.period.as_deref(), self.from.as_deref(), self.to.as_deref())
            }
        }
    )*};
}
windowed!(WindowQuery, TeamQuery, MetricsQuery);

/// A window parsed: its kind of period and first and last days.
struct Window {
    kind: Period,
    from: NaiveDate,
    to: NaiveDate,
}

const EXPECTED: &str =
    "period=daily|weekly|monthly, from=YYYY-MM-DD, to=YYYY-MM-DD (from ≤ to, at most 400 periods)";

fn window(query: &impl Windowed) -> Result<Window, ApiError> {
    let (period, from, to) = query.fields();
    let mut errors = Vec::new();
    let kind = match period {
        None => Period::Daily,
        Some(name) => Period::parse(name).unwrap_or_else(|| {
            errors.push(FieldError::new(
                "period",
                format!("{name:?} is not a period"),
                "daily, weekly or monthly",
            ));
            Period::Daily
        }),
    };
    let to = date(&mut errors, "to", to).unwrap_or_else(|| Utc::now().date_naive());
    let from = date(&mut errors, "from", from).unwrap_or_else(|| default_from(kind, to));
    check_fields(errors)?;
    let periods = match kind {
        Period::Daily => (to - from).num_days(),
        Period::Weekly => (to - from).num_days() / 7,
        Period::Monthly => (to - from).num_days() / 28,
    };
    if from > to || periods >= MAX_PERIODS {
        let problem = if from > to {
            "is after `to`".to_owned()
        } else {
            format!("is {periods} periods before `to`")
        };
        return Err(ApiError::Unprocessable(
            format!("the window is not usable: `from` {problem}"),
            vec![FieldError::new("from", problem, EXPECTED)],
        ));
    }
    Ok(Window { kind, from, to })
}

pub(super) fn date(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    raw: Option<&str>,
) -> Option<NaiveDate> {
    let raw = raw?;
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => Some(day),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                format!("{raw:?} is not a date"),
                "YYYY-MM-DD",
            ));
            None
        }
    }
}

fn default_from(kind: Period, to: NaiveDate) -> NaiveDate {
    match kind {
        Period::Daily => to - Days::new(29),
        Period::Weekly => to - Days::new(7 * 11),
        Period::Monthly => to.checked_sub_months(Months::new(11)).unwrap_or(to),
    }
}

/// Email figures of every campaign together, per period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmailAnalytics {
    /// `daily`, `weekly` or `monthly`.
    period: String,
    from: NaiveDate,
    to: NaiveDate,
    /// Every period of the window, oldest first (zeros where nothing happened).
    periods: Vec<EmailPeriod>,
}

/// Email performance of all campaigns: sent, delivered, opened, clicked, bounced, unsubscribed, revenue, rates and the engagement score per period, with period-over-period trends. The engagement score is 100 × clamp(0.4 × open rate + 0.6 × click rate − 2 × spam rate − unsubscribe rate, 0, 1), rates over delivered. Figures are those `rollup_metrics` computed (hourly).
#[utoipa::path(get, path = "/api/analytics/email", tag = "analytics", security(("bearer" = [])),
    params(WindowQuery),
    responses((status = 200, body = EmailAnalytics), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "`from` is after `to`, or the window holds more than 400 periods", body = ErrorBody)))]
pub(super) async fn email(
    State(state): State<AppState>,
    query: Result<Query<WindowQuery>, QueryRejection>,
) -> Result<axum::Json<EmailAnalytics>, ApiError> {
    let Query(query) = query.map_err(|e| query_error(&e, EXPECTED))?;
    let w = window(&query)?;
    let periods = analytics::email_series(&state.db, Subject::All, w.kind, w.from, w.to)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(EmailAnalytics {
        period: w.kind.as_str().to_owned(),
        from: w.from,
        to: w.to,
        periods,
    }))
}

/// One campaign's figures per period, with its statistics history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CampaignMetrics {
    campaign_id: String,
    period: String,
    from: NaiveDate,
    to: NaiveDate,
    periods: Vec<EmailPeriod>,
    /// Statistics snapshots recorded in the window, newest first, `historyLimit` at a time.
    history: Vec<Snapshot>,
    /// Pass as `historyBefore` for older snapshots; absent when there are none.
    next_history_before: Option<DateTime<Utc>>,
}

/// A campaign's email performance per period (as `/api/analytics/email`, for one campaign) and the Mailjet statistics snapshots of the window.
#[utoipa::path(get, path = "/api/campaigns/{id}/metrics", tag = "analytics", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$"), MetricsQuery),
    responses((status = 200, body = CampaignMetrics), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "`from` is after `to`, or the window holds more than 400 periods", body = ErrorBody)))]
pub(super) async fn campaign_metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> Result<axum::Json<CampaignMetrics>, ApiError> {
    check_path_id(&id)?;
    let Query(query) = query.map_err(|e| query_error(&e, EXPECTED))?;
    let (limit, before) = history_page(&query)?;
    let w = window(&query)?;
    if crate::store::campaigns::get(&state.db, &id)
        .await
        .map_err(db_error)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("no campaign {id:?}")));
    }
    let periods = analytics::email_series(&state.db, Subject::Campaign(&id), w.kind, w.from, w.to)
        .await
        .map_err(db_error)?;
    let (lo, hi) = (
        utc(w.kind.start_of(w.from)),
        utc(w.kind.next(w.kind.start_of(w.to))),
    );
    let mut history = analytics::history(&state.db, &id, lo, hi, before, limit + 1)
        .await
        .map_err(db_error)?;
    let more = history.len() as i64 > limit;
    history.truncate(limit as usize);
    let next_history_before = if more {
        history.last().map(|s| s.recorded_at)
    } else {
        None
    };
    Ok(axum::Json(CampaignMetrics {
        campaign_id: id,
        period: w.kind.as_str().to_owned(),
        from: w.from,
        to: w.to,
        periods,
        history,
        next_history_before,
    }))
}

/// The page of the statistics history a query asks for: how many, and before when.
fn history_page(query: &MetricsQuery) -> Result<(i64, Option<DateTime<Utc>>), ApiError> {
    let mut errors = Vec::new();
    let limit = query.history_limit.unwrap_or(100);
    if !(0..=1000).contains(&limit) {
        errors.push(FieldError::new(
            "historyLimit",
            format!("{limit} is out of range"),
            "0 to 1000",
        ));
    }
    let before = match query
        .history_before
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
    {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&Utc)),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "historyBefore",
                "is not an RFC 3339 time",
                "e.g. 2026-12-01T10:00:00Z",
            ));
            None
        }
    };
    check_fields(errors)?;
    Ok((limit, before))
}

fn utc(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Team activity per period and the bottlenecks now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TeamAnalytics {
    period: String,
    from: NaiveDate,
    to: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<String>,
    periods: Vec<TeamPeriod>,
    /// Computed at the time of the request (approvers' speed over the window).
    bottlenecks: Bottlenecks,
}

/// Team activity in Slack per period: messages posted in campaign channels, thread replies, task discussions (threads with replies), approvals processed, mean approval response time in seconds, active users and the top contributors (activity score: 1 per message, 1 more per reply in a thread, 5 per approval decided). Then the bottlenecks: approvals waiting longest, approvers slowest to answer in the window, live campaigns whose channel went quiet (`ANALYTICS_QUIET_HOURS`).
#[utoipa::path(get, path = "/api/analytics/team", tag = "analytics", security(("bearer" = [])),
    params(TeamQuery),
    responses((status = 200, body = TeamAnalytics), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "`from` is after `to`, or the window holds more than 400 periods", body = ErrorBody)))]
pub(super) async fn team(
    State(state): State<AppState>,
    query: Result<Query<TeamQuery>, QueryRejection>,
) -> Result<axum::Json<TeamAnalytics>, ApiError> {
    let Query(query) = query.map_err(|e| query_error(&e, EXPECTED))?;
    if let Some(campaign) = &query.campaign_id {
        let mut errors = Vec::new();
        crate::store::validate::check_id(&mut errors, "campaignId", campaign);
        check_fields(errors)?;
    }
    let w = window(&query)?;
    let subject = query
        .campaign_id
        .as_deref()
        .map_or(Subject::All, Subject::Campaign);
    let periods = analytics::team_series(&state.db, subject, w.kind, w.from, w.to)
        .await
        .map_err(db_error)?;
    let quiet = chrono::Duration::from_std(state.settings.analytics.quiet_after)
        .unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    let bottlenecks = analytics::bottlenecks(
        &state.db,
        utc(w.kind.start_of(w.from)),
        utc(w.kind.next(w.kind.start_of(w.to))),
        now.checked_sub_signed(quiet).unwrap_or(now),
    )
    .await
    .map_err(db_error)?;
    Ok(axum::Json(TeamAnalytics {
        period: w.kind.as_str().to_owned(),
        from: w.from,
        to: w.to,
        campaign_id: query.campaign_id,
        periods,
        bottlenecks,
    }))
}

/// Which period to rank.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TopQuery {
    /// `daily`, `weekly` or `monthly`; default `weekly`.
    #[param(pattern = "^(daily|weekly|monthly)$")]
    period: Option<String>,
    /// A day of the period to rank (YYYY-MM-DD); default today (the current period).
    #[param(format = Date)]
    start: Option<String>,
    /// How many of each, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Fewest messages delivered in the period to be ranked; default `ANALYTICS_MIN_SAMPLE` (100).
    #[param(minimum = 0, maximum = 1_000_000_000)]
    min_delivered: Option<i64>,
}

/// The best campaigns and templates of a period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TopContent {
    period: String,
    period_start: NaiveDate,
    /// Campaigns and templates that delivered fewer messages in the period are not ranked.
    min_delivered: i64,
    campaigns: Vec<Ranked>,
    templates: Vec<Ranked>,
}

/// Top-performing content: campaigns and templates ranked by engagement score over one period (best first; ties by more delivered), among those with at least `minDelivered` messages delivered in it, so a handful of sends does not top the list.
#[utoipa::path(get, path = "/api/analytics/top-content", tag = "analytics", security(("bearer" = [])),
    params(TopQuery),
    responses((status = 200, body = TopContent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn top_content(
    State(state): State<AppState>,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> Result<axum::Json<TopContent>, ApiError> {
    let expected = "period=daily|weekly|monthly, start=YYYY-MM-DD, limit 1–100, minDelivered ≥ 0";
    let Query(query) = query.map_err(|e| query_error(&e, expected))?;
    let (kind, day, limit, min_delivered) = ranking(&query, state.settings.analytics.min_sample)?;
    let start = kind.start_of(day);
    let campaigns = analytics::top(
        &state.db,
        Content::Campaigns,
        kind,
        start,
        min_delivered,
        limit,
    )
    .await
    .map_err(db_error)?;
    let templates = analytics::top(
        &state.db,
        Content::Templates,
        kind,
        start,
        min_delivered,
        limit,
    )
    .await
    .map_err(db_error)?;
    Ok(axum::Json(TopContent {
        period: kind.as_str().to_owned(),
        period_start: start,
        min_delivered,
        campaigns,
        templates,
    }))
}

/// What a top-content query asks for: the kind of period, a day in it, how many, the
/// smallest sample.
fn ranking(query: &TopQuery, default_min: i64) -> Result<(Period, NaiveDate, i64, i64), ApiError> {
    let mut errors = Vec::new();
    let kind = match query.period.as_deref() {
        None => Period::Weekly,
        Some(name) => Period::parse(name).unwrap_or_else(|| {
            errors.push(FieldError::new(
                "period",
                format!("{name:?} is not a period"),
                "daily, weekly or monthly",
            ));
            Period::Weekly
        }),
    };
    let day = date(&mut errors, "start", query.start.as_deref())
        .unwrap_or_else(|| Utc::now().date_naive());
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("{limit} is out of range"),
            "1 to 100",
        ));
    }
    let min_delivered = query.min_delivered.unwrap_or(default_min);
    if !(0..=1_000_000_000).contains(&min_delivered) {
        errors.push(FieldError::new(
            "minDelivered",
            format!("{min_delivered} is out of range"),
            "0 to 1000000000",
        ));
    }
    check_fields(errors)?;
    Ok((kind, day, limit, min_delivered))
}
