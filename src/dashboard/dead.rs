//! *Dead letters and failures*: filter by queue, job and error text; inspect a task's payload
//! and every failed attempt; retry or purge one, the selected, or all that match.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawForm, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::error::DashError;
use super::jobs::all_queues;
use super::layout::{self, Shell};
use super::session::Operator;
use crate::queue::Queue;
use crate::queue::dead::{self, DeadTask, Filter};
use crate::state::AppState;
use crate::store::audit;

const PER_PAGE: usize = 50;

/// What the list shows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    job: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    offset: usize,
}

impl DeadQuery {
    fn filter(&self) -> Filter {
        Filter {
            job: Some(self.job.trim().to_owned()).filter(|j| !j.is_empty()),
            error: Some(self.error.trim().to_owned()).filter(|e| !e.is_empty()),
        }
    }

    fn chosen(&self, state: &AppState) -> Result<Vec<Queue>, DashError> {
        let queues = all_queues(state);
        if self.queue.is_empty() {
            return Ok(queues);
        }
        let names: Vec<String> = queues.iter().map(|q| q.keys().name().to_owned()).collect();
        let chosen: Vec<Queue> = queues
            .into_iter()
            .filter(|q| q.keys().name() == self.queue)
            .collect();
        if chosen.is_empty() {
            return Err(DashError::BadRequest(format!(
                "no queue {:?}; queues: {}",
                self.queue,
                names.join(", ")
            )));
        }
        Ok(chosen)
    }
}

/// `GET /dashboard/dead`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<DeadQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| DashError::BadRequest(format!("query: {}", e.body_text())))?;
    if q.error.len() > 200 || q.job.len() > 100 {
        return Err(DashError::BadRequest(
            "the job filter holds at most 100 characters and the error filter 200".to_owned(),
        ));
    }
    let (total, rows) = matching(&state, &q).await?;
    let page: Vec<&(String, DeadTask)> = rows.iter().collect();
    let shell = Shell {
        title: "Dead letters",
        path: "/dashboard/dead",
        operator: &operator,
    };
    let controls = filters(&state, &q);
    let live = list(&operator, &q, total, &page);
    Ok(layout::respond(&headers, shell, controls, live))
}

/// How many dead tasks the chosen queues hold, and the page of those that match (newest
/// first, after skipping `offset`), each with its queue. Without a filter only ids are read
/// to find the page, so a page deep in 100,000 dead tasks costs what the first does.
async fn matching(
    state: &AppState,
    q: &DeadQuery,
) -> Result<(u64, Vec<(String, DeadTask)>), DashError> {
    let filter = q.filter();
    let want = q.offset + PER_PAGE;
    let mut total = 0;
    let queues = q.chosen(state)?;
    if filter.is_empty() {
        let mut holding = Vec::new();
        for queue in &queues {
            let dead = queue.counts().await.map_err(DashError::redis)?.dead;
            total += dead;
            if dead > 0 {
                holding.push(queue.clone());
            }
        }
        return Ok((total, newest_page(&holding, q.offset).await?));
    }
    let mut rows: Vec<(String, DeadTask)> = Vec::new();
    for queue in &queues {
        total += queue.counts().await.map_err(DashError::redis)?.dead;
        let found = dead::search(queue, &filter, 0, want)
            .await
            .map_err(DashError::redis)?;
        let name = queue.keys().name().to_owned();
        rows.extend(found.into_iter().map(|t| (name.clone(), t)));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.died_at));
    Ok((
        total,
        rows.into_iter().skip(q.offset).take(PER_PAGE).collect(),
    ))
}

/// The page of dead tasks after `offset`, newest first, across `queues` (those holding any).
/// One queue is read at its offset; several are merged by id and time of death, reading no
/// record outside the page.
async fn newest_page(
    queues: &[Queue],
    offset: usize,
) -> Result<Vec<(String, DeadTask)>, DashError> {
    if let [queue] = queues {
        let page = dead::list(queue, offset, PER_PAGE)
            .await
            .map_err(DashError::redis)?;
        let name = queue.keys().name().to_owned();
        return Ok(page.into_iter().map(|t| (name.clone(), t)).collect());
    }
    let mut ids: Vec<(usize, String, i64)> = Vec::new();
    for (i, queue) in queues.iter().enumerate() {
        let newest = dead::newest_ids(queue, offset + PER_PAGE)
            .await
            .map_err(DashError::redis)?;
        ids.extend(newest.into_iter().map(|(id, at)| (i, id, at)));
    }
    ids.sort_by_key(|(_, _, at)| std::cmp::Reverse(*at));
    let mut rows = Vec::new();
    for (i, queue) in queues.iter().enumerate() {
        let page: Vec<String> = ids
            .iter()
            .skip(offset)
            .take(PER_PAGE)
            .filter(|(n, _, _)| *n == i)
            .map(|(_, id, _)| id.clone())
            .collect();
        let name = queue.keys().name().to_owned();
        let found = dead::records(queue, &page)
            .await
            .map_err(DashError::redis)?;
        rows.extend(found.into_iter().map(|t| (name.clone(), t)));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.died_at));
    Ok(rows)
}

fn filters(state: &AppState, q: &DeadQuery) -> Markup {
    let jobs: Vec<String> = crate::jobs::builtin()
        .jobs()
        .map(|j| j.name.clone())
        .collect();
    let queue_names: Vec<String> = all_queues(state)
        .iter()
        .map(|q| q.keys().name().to_owned())
        .collect();
    html! {
        form.filters method="get" action="/dashboard/dead" {
            label { "Queue" select name="queue" {
                option value="" { "every queue" }
                @for n in &queue_names { option value=(n) selected[*n == q.queue] { (n) } }
            } }
            label { "Job" select name="job" {
                option value="" { "any job" }
                @for j in &jobs { option value=(j) selected[*j == q.job] { (j) } }
            } }
            label { "Error contains" input name="error" value=(q.error) maxlength="200"; }
            button type="submit" { "Filter" }
        }
    }
}

fn list(operator: &Operator, q: &DeadQuery, total: u64, page: &[&(String, DeadTask)]) -> Markup {
    let scope = [
        ("queue", q.queue.as_str()),
        ("job", q.job.as_str()),
        ("error", q.error.as_str()),
    ];
    html! {
        p { (total) " dead tasks in " @if q.queue.is_empty() { "every queue" } @else { "queue " (q.queue) } "." }
        form method="post" action="/dashboard/dead/act" {
            (layout::csrf(operator))
            @for (k, v) in scope { input type="hidden" name=(k) value=(v); }
            (table(page))
            p {
                button type="submit" name="action" value="retry-selected" { "Retry selected" } " "
                button.danger type="submit" name="action" value="purge-selected" data-confirm="Delete the selected dead tasks for good?" { "Purge selected" } " "
                button type="submit" name="action" value="retry-matching" data-confirm="Retry every dead task that matches the filter?" { "Retry all matching" } " "
                button.danger type="submit" name="action" value="purge-matching" data-confirm="Delete every dead task that matches the filter for good?" { "Purge all matching" }
            }
        }
        (layout::pager("/dashboard/dead", &scope.map(|(k, v)| (k, v.to_owned())), q.offset, PER_PAGE, page.len()))
    }
}

fn table(page: &[&(String, DeadTask)]) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr {
                th { input #select-all type="checkbox" aria-label="Select every row shown"; }
                th { "Died" } th { "Queue" } th { "Job" } th.num { "Attempts" } th { "Reason" } th { "" }
            } }
            tbody {
                @if page.is_empty() { (layout::empty(7, "No dead task matches.")) }
                @for (queue, t) in page { tr {
                    td { input type="checkbox" name="id" value=(format!("{queue}|{}", t.id)) aria-label=(format!("Select task {}", t.id)); }
                    td { (layout::time_ms(t.died_at)) }
                    td { (queue) }
                    td { (t.job.as_deref().unwrap_or("(undecodable)")) }
                    td.num { (t.attempts) }
                    td { span title=(t.reason) { (layout::short(&t.reason, 140)) } }
                    td { a href=(format!("/dashboard/dead/task?queue={queue}&id={}", t.id)) { "Inspect" } }
                } }
            }
        } }
    }
}

/// Which task to inspect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    queue: String,
    id: String,
}

/// `GET /dashboard/dead/task?queue=&id=`: the payload and every failed attempt.
pub async fn task(
    State(state): State<AppState>,
    headers: HeaderMap,
    operator: Operator,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Response, DashError> {
    let Query(q) = query.map_err(|e| {
        DashError::BadRequest(format!("query: {} (expected queue and id)", e.body_text()))
    })?;
    let scope = DeadQuery {
        queue: q.queue.clone(),
        ..DeadQuery::default()
    };
    let queue = scope.chosen(&state)?.remove(0);
    let t = dead::get(&queue, &q.id)
        .await
        .map_err(DashError::redis)?
        .ok_or_else(|| {
            DashError::NotFound(format!(
                "no dead task {} in queue {} (retried or purged?)",
                q.id, q.queue
            ))
        })?;
    let shell = Shell {
        title: "Dead task",
        path: "/dashboard/dead",
        operator: &operator,
    };
    let back = html! { p { a href="/dashboard/dead" { "← All dead letters" } } };
    let live = inspected(&operator, &q.queue, &t);
    Ok(layout::respond(&headers, shell, back, live))
}

fn inspected(operator: &Operator, queue: &str, t: &DeadTask) -> Markup {
    let envelope = t.task();
    let payload: serde_json::Value = serde_json::from_str(&t.payload)
        .unwrap_or_else(|_| serde_json::Value::String(t.payload.clone()));
    let failures = envelope
        .as_ref()
        .map(|e| e.failures.clone())
        .unwrap_or_default();
    html! {
        div.grid { div.card {
            p { "Queue " b { (queue) } ", job " b { (t.job.as_deref().unwrap_or("(undecodable)")) } }
            p { "Died " (layout::time_ms(t.died_at)) " after " (t.attempts) " attempts." }
            p.bad { (t.reason) }
            @if let Some(e) = &envelope {
                p { "Enqueued " (layout::time_ms(e.enqueued_at)) " by " (e.trigger.as_deref().unwrap_or("the API or a job")) "." }
            }
            form.inline method="post" action="/dashboard/dead/act" {
                (layout::csrf(operator))
                input type="hidden" name="id" value=(format!("{queue}|{}", t.id));
                button type="submit" name="action" value="retry-selected" { "Retry" } " "
                button.danger type="submit" name="action" value="purge-selected" data-confirm="Delete this dead task for good?" { "Purge" }
            }
        } }
        h2 { "Attempts" }
        div.table-wrap { table {
            thead { tr { th { "#" } th { "Failed" } th { "Error" } } }
            tbody {
                @if failures.is_empty() { (layout::empty(3, "This task recorded no failed attempt before it died (a permanent failure, or an older task).")) }
                @for (i, f) in failures.iter().enumerate() { tr { td { (i + 1) } td { (layout::time_ms(f.at_ms)) } td { (f.error) } } }
            }
        } }
        h2 { "Payload" }
        (layout::json_block(&payload))
    }
}

/// `POST /dashboard/dead/act`: `action` is `retry-selected`, `purge-selected` (the `id`
/// fields, each `queue|task id`), `retry-matching` or `purge-matching` (the filter fields).
pub async fn act(
    State(state): State<AppState>,
    operator: Operator,
    RawForm(body): RawForm,
) -> Result<Response, DashError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    operator.may_act(&get("csrf"))?;
    let action = get("action");
    let q = DeadQuery {
        queue: get("queue"),
        job: get("job"),
        error: get("error"),
        offset: 0,
    };
    let targets = match action.as_str() {
        "retry-selected" | "purge-selected" => selected(&state, &fields)?,
        "retry-matching" | "purge-matching" => all_matching(&state, &q).await?,
        other => return Err(DashError::BadRequest(format!("unknown action {other:?}"))),
    };
    if targets.is_empty() {
        return Ok(layout::done(
            "/dashboard/dead",
            "Nothing was selected or matched.",
        ));
    }
    let retry = action.starts_with("retry");
    let done = apply(&state, &operator, &q, &action, &targets).await?;
    let message = if retry {
        format!(
            "Sent {done} of {} dead tasks back to their queues.",
            targets.len()
        )
    } else {
        format!("Deleted {done} of {} dead tasks.", targets.len())
    };
    Ok(layout::done("/dashboard/dead", &message))
}

/// Retries or deletes `targets` and records it; how many changed.
async fn apply(
    state: &AppState,
    operator: &Operator,
    q: &DeadQuery,
    action: &str,
    targets: &[(Queue, String)],
) -> Result<u64, DashError> {
    let retry = action.starts_with("retry");
    let mut done = 0u64;
    for (queue, id) in targets {
        let changed = if retry {
            dead::retry(queue, id).await
        } else {
            dead::delete(queue, id).await
        };
        done += u64::from(changed.map_err(DashError::redis)?);
    }
    let verb = if retry {
        "dead_letters.retry"
    } else {
        "dead_letters.purge"
    };
    let ids: Vec<&str> = targets
        .iter()
        .take(100)
        .map(|(_, id)| id.as_str())
        .collect();
    let details = serde_json::json!({ "selection": action, "queue": q.queue, "job": q.job, "error": q.error, "changed": done, "ids": ids });
    let subject = if q.queue.is_empty() { "*" } else { &q.queue };
    let mut conn = state.db.acquire().await.map_err(DashError::db)?;
    audit::record(
        &mut conn,
        &operator.actor(),
        verb,
        "dead_letters",
        subject,
        details,
    )
    .await
    .map_err(DashError::db)?;
    Ok(done)
}

/// The `id` fields of the form (`queue|task id`), each with its queue.
fn selected(
    state: &AppState,
    fields: &[(String, String)],
) -> Result<Vec<(Queue, String)>, DashError> {
    let queues = all_queues(state);
    fields
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| {
            let (queue, id) = v
                .split_once('|')
                .ok_or_else(|| DashError::BadRequest(format!("{v:?} is not queue|task id")))?;
            let queue = queues
                .iter()
                .find(|q| q.keys().name() == queue)
                .cloned()
                .ok_or_else(|| DashError::BadRequest(format!("no queue {queue:?}")))?;
            Ok((queue, id.to_owned()))
        })
        .collect()
}

/// Every dead task of the chosen queues that matches the filter.
async fn all_matching(state: &AppState, q: &DeadQuery) -> Result<Vec<(Queue, String)>, DashError> {
    let mut targets = Vec::new();
    for queue in q.chosen(state)? {
        let ids = dead::matching_ids(&queue, &q.filter())
            .await
            .map_err(DashError::redis)?;
        targets.extend(ids.into_iter().map(|id| (queue.clone(), id)));
    }
    Ok(targets)
}
