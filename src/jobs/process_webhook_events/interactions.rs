//! Clicks and modal submissions: Approve / Reject decide an approval (only its approver or a
//! member of `SLACK_APPROVER_GROUP`, only while pending and before the deadline); "Request
//! changes" is decided by its modal's submission, with the comment; "Mute these DMs" mutes
//! the clicker's DMs. A click that cannot decide changes nothing, is answered ephemerally
//! and, when it was not the clicker's to make, audited.

use serde_json::{Value, json};
use sqlx::PgConnection;

use super::Applied;
use crate::jobs::support::render;
use crate::jobs::support::workflow::{self, Verdict};
use crate::queue::job::{JobDeps, JobError};
use crate::store::approvals;
use crate::store::audit::{self, Actor};

/// Applies one stored interaction (`webhook_events.id` `event`).
pub(super) async fn apply(
    tx: &mut PgConnection,
    deps: &JobDeps,
    event: i64,
    kind: &str,
    payload: &Value,
) -> Result<Applied, JobError> {
    let user = payload
        .pointer("/user/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    if user.is_empty() {
        return Ok(Applied::Ignored);
    }
    match kind {
        "block_actions" => {
            let channel = payload
                .pointer("/container/channel_id")
                .or_else(|| payload.pointer("/channel/id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let response_url = payload["response_url"].as_str();
            let mut applied = Applied::Ignored;
            for (i, action) in payload["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let click = Click {
                    event,
                    index: i,
                    user,
                    channel,
                    response_url,
                };
                if act(tx, deps, &click, action).await? == Applied::Done {
                    applied = Applied::Done;
                }
            }
            Ok(applied)
        }
        "view_submission"
            if payload.pointer("/view/callback_id").and_then(Value::as_str)
                == Some(render::CHANGES_MODAL) =>
        {
            changes_submitted(tx, deps, event, user, &payload["view"]).await
        }
        _ => Ok(Applied::Ignored),
    }
}

/// One button of one click.
struct Click<'a> {
    event: i64,
    index: usize,
    user: &'a str,
    channel: &'a str,
    response_url: Option<&'a str>,
}

impl Click<'_> {
    fn key(&self) -> String {
        format!("{}:{}", self.event, self.index)
    }

    fn answer_to(&self) -> workflow::AnswerTo<'_> {
        workflow::AnswerTo {
            channel: self.channel,
            user: self.user,
            response_url: self.response_url,
        }
    }
}

async fn act(
    tx: &mut PgConnection,
    deps: &JobDeps,
    click: &Click<'_>,
    action: &Value,
) -> Result<Applied, JobError> {
    let Some(value) = action["value"].as_str() else {
        return Ok(Applied::Ignored);
    };
    let status = match action["action_id"].as_str() {
        Some(render::APPROVE) => "approved",
        Some(render::REJECT) => "rejected",
        Some(render::MUTE_DMS) => return mute(tx, deps, click, value).await,
        // Decided by the modal's submission; a refused click is answered here.
        Some(render::REQUEST_CHANGES) => "changes_requested",
        _ => return Ok(Applied::Ignored),
    };
    let client = slack(deps);
    let verdict =
        workflow::may_decide(tx, client.as_ref(), &deps.settings, value, click.user, true)
            .await
            .map_err(workflow_error)?;
    if let Some(answer) = workflow::refusal(&verdict) {
        refuse(tx, click, value, &verdict, status, &answer).await?;
        return Ok(Applied::Done);
    }
    if status == "changes_requested" {
        return Ok(Applied::Ignored);
    }
    decide(tx, deps, value, status, click.user, None).await
}

/// Answers a click that cannot decide; one that was not the clicker's is audited.
async fn refuse(
    tx: &mut PgConnection,
    click: &Click<'_>,
    approval: &str,
    verdict: &Verdict,
    wanted: &str,
    answer: &str,
) -> Result<(), JobError> {
    if let Verdict::NotYours(_) = verdict {
        audit::record(
            tx,
            &Actor::new(&format!("slack:{}", click.user)),
            "approval.unauthorized_click",
            "approval",
            approval,
            json!({ "slack_user": click.user, "wanted": wanted, "channel": click.channel }),
        )
        .await?;
        metrics::counter!("slack_approval_clicks_refused_total", "why" => "not_yours").increment(1);
    } else {
        metrics::counter!("slack_approval_clicks_refused_total", "why" => "not_pending")
            .increment(1);
    }
    if !click.channel.is_empty() || click.response_url.is_some() {
        workflow::ephemeral(tx, &click.key(), click.answer_to(), answer).await?;
    }
    Ok(())
}

async fn decide(
    tx: &mut PgConnection,
    deps: &JobDeps,
    approval: &str,
    status: &str,
    user: &str,
    comment: Option<&str>,
) -> Result<Applied, JobError> {
    if !approvals::decide(tx, approval, status, user, comment).await? {
        return Ok(Applied::Ignored);
    }
    let actor = Actor::new(&format!("slack:{user}"));
    workflow::announce_outcome(
        tx,
        approval,
        &actor,
        deps.settings.workflows.webhook_url.is_some(),
    )
    .await?;
    Ok(Applied::Done)
}

/// The "request changes" modal was submitted: the approval is decided with its comment.
async fn changes_submitted(
    tx: &mut PgConnection,
    deps: &JobDeps,
    event: i64,
    user: &str,
    view: &Value,
) -> Result<Applied, JobError> {
    let Some(approval) = view["private_metadata"].as_str().filter(|a| !a.is_empty()) else {
        return Ok(Applied::Ignored);
    };
    let comment = view
        .pointer(&format!(
            "/state/values/{}/{}/value",
            render::COMMENT_BLOCK,
            render::COMMENT_INPUT
        ))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let client = slack(deps);
    let verdict = workflow::may_decide(tx, client.as_ref(), &deps.settings, approval, user, true)
        .await
        .map_err(workflow_error)?;
    if let Some(answer) = workflow::refusal(&verdict) {
        let channel = match &verdict {
            Verdict::NotYours(a)
            | Verdict::Decided(a)
            | Verdict::PastDeadline(a)
            | Verdict::Allowed(a) => a.slack_channel.clone(),
            Verdict::Unknown => None,
        };
        let click = Click {
            event,
            index: 0,
            user,
            channel: channel.as_deref().unwrap_or(""),
            response_url: None,
        };
        refuse(tx, &click, approval, &verdict, "changes_requested", &answer).await?;
        return Ok(Applied::Done);
    }
    decide(tx, deps, approval, "changes_requested", user, comment).await
}

/// "Mute these DMs": the team member of the DM stops getting DMs (channel notices go on).
async fn mute(
    tx: &mut PgConnection,
    deps: &JobDeps,
    click: &Click<'_>,
    member: &str,
) -> Result<Applied, JobError> {
    let workspace = deps.settings.slack.workspace();
    let clicker_member = approvals::member_of_slack_user(tx, workspace, click.user).await?;
    if clicker_member.as_deref().is_some_and(|m| m != member) {
        workflow::ephemeral(
            tx,
            &click.key(),
            click.answer_to(),
            "These DMs are someone else's; they were not muted.",
        )
        .await?;
        return Ok(Applied::Done);
    }
    if approvals::set_dms_muted(tx, member, true).await? {
        audit::record(
            tx,
            &Actor::new(&format!("slack:{}", click.user)),
            "team_member.dms_muted",
            "team_member",
            member,
            json!({ "slack_user": click.user }),
        )
        .await?;
    }
    workflow::ephemeral(tx, &click.key(), click.answer_to(),
        "Muted: campaign-sync will not DM you any more. Channel notices go on; the Campaign Manager can turn DMs back on.").await?;
    Ok(Applied::Done)
}

fn workflow_error(e: workflow::WorkflowError) -> JobError {
    match e {
        workflow::WorkflowError::Db(e) => e.into(),
        other => JobError::permanent(other.to_string()),
    }
}

/// The Slack client, for the approver group (None when it cannot be built).
fn slack(deps: &JobDeps) -> Option<crate::clients::slack::SlackClient> {
    deps.settings.workflows.approver_group.as_ref()?;
    crate::clients::slack_from_settings(&deps.settings, deps.db.clone(), deps.redis.clone()).ok()
}

/// After a click was applied: deliver what it queued.
pub(super) async fn kick(deps: &JobDeps) {
    crate::jobs::deliver_slack_posts::kick_or_log(deps.redis.clone(), &deps.prefix, "webhook")
        .await;
    if deps.settings.workflows.webhook_url.is_some() {
        crate::jobs::deliver_outgoing_webhooks::kick_or_log(
            deps.redis.clone(),
            &deps.prefix,
            "webhook",
        )
        .await;
    }
}
