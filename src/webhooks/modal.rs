//! "Request changes" opens a modal asking for a comment. `views.open` needs the click's
//! `trigger_id`, which Slack honours for 3 s only, so the receiver opens it itself, before it
//! answers, when the clicker may decide; the job answers every other click.

use std::time::Duration;

use serde_json::Value;

use crate::jobs::support::render;
use crate::jobs::support::workflow::{self, Verdict};
use crate::state::AppState;

/// How long the receiver spends on a modal at most (Slack allows 3 s for the whole answer).
const BUDGET: Duration = Duration::from_millis(2_500);

/// A click asking for the modal.
#[derive(Debug, Clone)]
pub struct Ask {
    approval: String,
    trigger: String,
    user: String,
}

/// The modal a `block_actions` payload asks for, if any.
pub fn asked(payload: &Value) -> Option<Ask> {
    if payload["type"] != "block_actions" {
        return None;
    }
    let action = payload["actions"]
        .as_array()?
        .iter()
        .find(|a| a["action_id"] == render::REQUEST_CHANGES)?;
    Some(Ask {
        approval: action["value"].as_str()?.to_owned(),
        trigger: payload["trigger_id"].as_str()?.to_owned(),
        user: payload.pointer("/user/id")?.as_str()?.to_owned(),
    })
}

/// Opens the modal when the clicker may decide the approval now; failures are logged (the
/// click is stored, and the approver can click again).
pub async fn open(state: &AppState, ask: Ask) {
    match tokio::time::timeout(BUDGET, try_open(state, &ask)).await {
        Ok(Ok(true)) => {
            metrics::counter!("slack_modals_opened_total", "outcome" => "opened").increment(1)
        }
        Ok(Ok(false)) => {
            metrics::counter!("slack_modals_opened_total", "outcome" => "refused").increment(1)
        }
        Ok(Err(e)) => {
            metrics::counter!("slack_modals_opened_total", "outcome" => "failed").increment(1);
            tracing::warn!(error = %e, approval = ask.approval, "could not open the request-changes modal");
        }
        Err(_) => {
            metrics::counter!("slack_modals_opened_total", "outcome" => "timeout").increment(1);
            tracing::warn!(
                approval = ask.approval,
                "opening the request-changes modal took too long"
            );
        }
    }
}

async fn try_open(state: &AppState, ask: &Ask) -> anyhow::Result<bool> {
    let client = crate::clients::slack_from_settings(
        &state.settings,
        state.db.clone(),
        state.redis.clone(),
    )?;
    let mut conn = state.db.acquire().await?;
    let verdict = workflow::may_decide(
        &mut conn,
        Some(&client),
        &state.settings,
        &ask.approval,
        &ask.user,
        false,
    )
    .await?;
    let Verdict::Allowed(a) = verdict else {
        return Ok(false);
    };
    drop(conn);
    client
        .open_view(
            &ask.trigger,
            &render::changes_modal(&a.approval_id, &a.stage),
        )
        .await?;
    Ok(true)
}
