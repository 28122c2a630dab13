//! The page shell (navigation, who is signed in, the live region) and the small pieces every
//! page uses: times in the viewer's zone, masked addresses, action buttons with the CSRF token.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use super::session::Operator;

/// The pages, in the navigation's order: path and label.
pub const PAGES: [(&str, &str); 10] = [
    ("/dashboard", "Overview"),
    ("/dashboard/schedules", "Schedules"),
    ("/dashboard/queues", "Queues"),
    ("/dashboard/dead", "Dead letters"),
    ("/dashboard/email-requests", "Email requests"),
    ("/dashboard/campaigns", "Campaigns"),
    ("/dashboard/webhooks", "Webhooks"),
    ("/dashboard/approvals", "Approvals"),
    ("/dashboard/analytics", "Analytics"),
    ("/dashboard/audit", "Audit"),
];

/// Header a live update sends: answer only the live region.
pub const FRAGMENT_HEADER: &str = "x-dashboard-fragment";
const NOTICE_COOKIE: &str = "cs_notice";

/// One page: its title, which navigation entry is current, and who is looking.
pub struct Shell<'a> {
    pub title: &'a str,
    pub path: &'a str,
    pub operator: &'a Operator,
}

/// A page or, for a live update, just its live region. `controls` (filters, forms) stay put;
/// `live` is replaced every few seconds while the tab is visible.
pub fn respond(headers: &HeaderMap, shell: Shell<'_>, controls: Markup, live: Markup) -> Response {
    if headers.contains_key(FRAGMENT_HEADER) {
        return live.into_response();
    }
    let notice = notice(headers);
    let body = html! {
        a.skip href="#content" { "Skip to content" }
        header.top {
            nav aria-label="Dashboard pages" {
                span.brand { "campaign-sync" }
                ul {
                    @for (path, label) in PAGES {
                        li { a href=(path) aria-current=[(path == shell.path).then_some("page")] { (label) } }
                    }
                }
            }
            div.who {
                span.role { (shell.operator.session.name) " · " (shell.operator.session.role)
                    @if !shell.operator.session.is_admin() { " (may only look)" } }
                form method="post" action="/dashboard/logout" {
                    (csrf(shell.operator))
                    button.link type="submit" { "Sign out" }
                }
            }
        }
        main #content tabindex="-1" {
            h1 { (shell.title) }
            @if let Some(n) = &notice { p.notice role="status" { (n) } }
            (controls)
            div.livebar {
                label { input #live-toggle type="checkbox" checked; " Live updates" }
                span #live-status aria-live="off" {}
            }
            div #live { (live) }
        }
    };
    let mut response = super::document::bare(shell.title, body).into_response();
    if notice.is_some() {
        let clear =
            format!("{NOTICE_COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0");
        if let Ok(v) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A redirect to `to` that shows `message` once on the next page.
pub fn done(to: &str, message: &str) -> Response {
    let encoded: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let mut response = axum::response::Redirect::to(to).into_response();
    let cookie = format!(
        "{NOTICE_COOKIE}={encoded}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=60"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn notice(headers: &HeaderMap) -> Option<String> {
    let raw = super::document::cookie(headers, NOTICE_COOKIE)?;
    let decoded: String = url::form_urlencoded::parse(format!("n={raw}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()?;
    (!decoded.is_empty()).then(|| decoded.chars().take(300).collect())
}

/// The hidden CSRF field every form carries.
pub fn csrf(operator: &Operator) -> Markup {
    html! { input type="hidden" name="csrf" value=(operator.session.csrf); }
}

/// A one-button form POSTing `fields` to `action`.
pub fn button(operator: &Operator, action: &str, label: &str, fields: &[(&str, &str)]) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(operator))
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

/// A time the browser shows in the viewer's zone (UTC on hover and without JavaScript).
pub fn time(at: DateTime<Utc>) -> Markup {
    let utc = at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) title=(utc) { (utc) } }
}

/// `time` of an optional moment, or a dash.
pub fn maybe_time(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// `time` of milliseconds since the epoch.
pub fn time_ms(ms: i64) -> Markup {
    maybe_time(DateTime::from_timestamp_millis(ms))
}

/// An address as list pages show it: `j…@example.com`.
pub fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}…@{domain}")
        }
        None => "…".to_owned(),
    }
}

/// A duration in words: `850 ms`, `12.3 s`, `4 min`, `2.5 h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else if seconds < 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// A percentage of a ratio, or a dash when there is none.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

/// Text that may hold anything (an error message), shortened for a table cell.
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// Links to the previous and next page of a list, keeping the other query parameters.
pub fn pager(
    base: &str,
    query: &[(&str, String)],
    offset: usize,
    limit: usize,
    shown: usize,
) -> Markup {
    let link = |offset: usize| {
        let mut q: Vec<(&str, String)> = query
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        q.push(("offset", offset.to_string()));
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        format!("{base}?{encoded}")
    };
    html! {
        nav.pager aria-label="Pages" {
            @if offset > 0 { a href=(link(offset.saturating_sub(limit))) { "← Newer" } }
            span.muted { "rows " (offset + usize::from(shown > 0)) "–" (offset + shown) }
            @if shown == limit { a href=(link(offset + limit)) { "Older →" } }
        }
    }
}

/// An empty list's row.
pub fn empty(columns: usize, text: &str) -> Markup {
    html! { tr { td colspan=(columns) .muted { (text) } } }
}

/// Raw JSON, pretty-printed and escaped, for inspecting a payload.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (text) } }
}

/// A notice that a page's data does not exist yet.
pub fn none_yet(text: &str) -> Markup {
    html! { p.muted { (PreEscaped("&#9432; ")) (text) } }
}
