//! Approvals: asked for (a DM to the approver, a notice in the campaign's channel), decided
//! or expired (the DM loses its buttons, the channel hears in the notice's thread, the
//! Campaign Manager gets a webhook), reminded; and who may decide.

use chrono::Utc;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::render::{self, ApprovalFacts};
use super::{WorkflowError, check_campaign, check_member, unknown};
use crate::store::approvals::{self, ApprovalInput, ApprovalView, Labels};
use crate::store::audit::{self, Actor};
use crate::store::outgoing_webhooks;
use crate::store::slack_posts::{self, NewPost};

/// What the messages of a stored approval name: its campaign's and approver's names, its
/// labels.
struct Names {
    campaign: String,
    approver: String,
    labels: Labels,
}

impl Names {
    /// Read in `tx`.
    async fn of(tx: &mut PgConnection, a: &ApprovalView) -> Result<Self, sqlx::Error> {
        let (campaign, approver) = approvals::names(tx, &a.campaign_id, &a.approver_id).await?;
        let labels: Labels = serde_json::from_value(a.labels.clone()).unwrap_or_default();
        Ok(Names {
            campaign,
            approver,
            labels,
        })
    }

    /// The facts the renderer shows of `a`.
    fn facts<'a>(&'a self, a: &'a ApprovalView) -> ApprovalFacts<'a> {
        ApprovalFacts {
            id: &a.approval_id,
            stage: &a.stage,
            campaign: &self.campaign,
            approver: &self.approver,
            deadline: a.deadline,
            labels: &self.labels,
        }
    }
}

/// Asks for an approval: stores it, DMs the approver, and posts the notice in the
/// campaign's channel. The same `approvalId` and body again give back the stored approval;
/// another body under that id is refused.
pub async fn accept_approval(
    db: &PgPool,
    input: &ApprovalInput,
    actor: &Actor,
) -> Result<(ApprovalView, bool), WorkflowError> {
    let replay = |existing: ApprovalView| {
        if existing.request_hash == input.fingerprint() {
            Ok((existing, false))
        } else {
            Err(WorkflowError::Conflict(format!(
                "approval {:?} was already asked for with a different request",
                input.approval_id
            )))
        }
    };
    if let Some(existing) = approvals::get(db, &input.approval_id).await? {
        return replay(existing);
    }
    if input.deadline <= Utc::now() {
        return Err(unknown(
            "deadline",
            format!("{} has passed", input.deadline.to_rfc3339()),
            "a time in the future",
        ));
    }
    let mut tx = db.begin().await?;
    check_campaign(&mut tx, &input.campaign_id).await?;
    check_member(&mut tx, "approverId", &input.approver_id).await?;
    if !approvals::insert(&mut tx, input).await? {
        tx.rollback().await?;
        let existing = approvals::get(db, &input.approval_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return replay(existing);
    }
    let id = &input.approval_id;
    let (request, notice) = queue_request(&mut tx, input).await?;
    approvals::set_posts(&mut tx, id, request, notice).await?;
    audit::record(&mut tx, actor, "approval.requested", "approval", id,
        json!({ "campaign_id": input.campaign_id, "stage": input.stage, "approver_id": input.approver_id, "deadline": input.deadline })).await?;
    tx.commit().await?;
    metrics::counter!("slack_approvals_requested_total").increment(1);
    let view = approvals::get(db, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((view, true))
}

/// Queues the approver's DM and the channel's notice of a new approval: their post ids.
async fn queue_request(
    tx: &mut PgConnection,
    input: &ApprovalInput,
) -> Result<(Uuid, Uuid), sqlx::Error> {
    let id = &input.approval_id;
    let (campaign, approver) = approvals::names(tx, &input.campaign_id, &input.approver_id).await?;
    let a = ApprovalFacts {
        id,
        stage: &input.stage,
        campaign: &campaign,
        approver: &approver,
        deadline: input.deadline,
        labels: &input.actions,
    };
    let dm = render::approval_request(&a, &input.approver_id);
    let (request, _) = slack_posts::enqueue(
        &mut *tx,
        &NewPost {
            dedupe_key: format!("approval:{id}:request"),
            kind: "approval_request",
            campaign_id: Some(input.campaign_id.clone()),
            approval_id: Some(id.clone()),
            dm_member: Some(input.approver_id.clone()),
            dm_user: input.slack_user_id.clone(),
            text: dm.text,
            blocks: dm.blocks,
            ..Default::default()
        },
    )
    .await?;
    let notice = render::approval_notice(&a);
    let (notice, _) = slack_posts::enqueue(
        &mut *tx,
        &NewPost {
            dedupe_key: format!("approval:{id}:notice"),
            kind: "approval_notice",
            campaign_id: Some(input.campaign_id.clone()),
            approval_id: Some(id.clone()),
            to_campaign_channel: true,
            text: notice.text,
            blocks: notice.blocks,
            ..Default::default()
        },
    )
    .await?;
    Ok((request, notice))
}

/// Tells everyone an approval was decided or expired, in `tx`: the approver's message loses
/// its buttons, the channel hears in the approval's thread, the Campaign Manager gets a
/// webhook (when configured), and the audit log has it.
pub async fn announce_outcome(
    tx: &mut PgConnection,
    id: &str,
    actor: &Actor,
    webhooks: bool,
) -> Result<(), sqlx::Error> {
    let Some(a) = approvals::get(&mut *tx, id).await? else {
        return Ok(());
    };
    queue_outcome_posts(tx, &a).await?;
    let event = json!({ "approvalId": id, "campaignId": a.campaign_id, "stage": a.stage, "status": a.status,
        "decidedBy": a.decided_by, "decidedAt": a.decided_at, "comment": a.comment, "deadline": a.deadline });
    if webhooks {
        outgoing_webhooks::enqueue(
            tx,
            &format!("approval:{id}:{}", a.status),
            &format!("approval.{}", a.status),
            &event,
        )
        .await?;
    }
    let action = if a.status == "expired" {
        "approval.expired"
    } else {
        "approval.decided"
    };
    audit::record(tx, actor, action, "approval", id, event).await?;
    metrics::counter!("slack_approvals_decided_total", "status" => a.status.clone()).increment(1);
    Ok(())
}

/// The posts of an outcome: the approver's message changed in place, and the reply in the
/// notice's thread.
async fn queue_outcome_posts(tx: &mut PgConnection, a: &ApprovalView) -> Result<(), sqlx::Error> {
    let id = a.approval_id.as_str();
    let names = Names::of(tx, a).await?;
    let f = names.facts(a);
    let at = a.decided_at.unwrap_or(a.updated_at);
    let by = a.decided_by.as_deref();
    if let Some(request) = a.request_post {
        let r = render::approval_decided(&f, &a.status, by, at, a.comment.as_deref());
        slack_posts::enqueue(
            tx,
            &NewPost {
                dedupe_key: format!("approval:{id}:update:{}", a.status),
                kind: "approval_update",
                op: "update",
                campaign_id: Some(a.campaign_id.clone()),
                approval_id: Some(id.to_owned()),
                target_post: Some(request),
                text: r.text,
                blocks: r.blocks,
                ..Default::default()
            },
        )
        .await?;
    }
    let r = render::approval_outcome(&f, &a.status, by, a.comment.as_deref());
    slack_posts::enqueue(
        tx,
        &NewPost {
            dedupe_key: format!("approval:{id}:outcome"),
            kind: "approval_outcome",
            campaign_id: Some(a.campaign_id.clone()),
            approval_id: Some(id.to_owned()),
            to_campaign_channel: true,
            thread_of: a.notice_post,
            text: r.text,
            blocks: r.blocks,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Queues the reminder of approval `id` due `offset` before its deadline, once: true when it
/// was queued now.
pub async fn queue_reminder(
    tx: &mut PgConnection,
    id: &str,
    offset: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let Some(a) = approvals::lock(tx, id).await? else {
        return Ok(false);
    };
    if a.status != "pending" {
        return Ok(false);
    }
    let names = Names::of(tx, &a).await?;
    let f = names.facts(&a);
    let r = render::approval_reminder(&f, offset);
    let (_, queued) = slack_posts::enqueue(
        tx,
        &NewPost {
            dedupe_key: format!("approval:{id}:reminder:{}", offset.as_secs()),
            kind: "approval_reminder",
            campaign_id: Some(a.campaign_id.clone()),
            approval_id: Some(id.to_owned()),
            dm_member: Some(a.approver_id.clone()),
            dm_user: a.slack_user_id.clone(),
            thread_of: a.request_post,
            text: r.text,
            blocks: r.blocks,
            ..Default::default()
        },
    )
    .await?;
    if queued {
        approvals::count_reminder(tx, id).await?;
    }
    Ok(queued)
}

/// Marks the reminder of approval `id` at `offset` seconds as passed (never to be sent).
pub async fn spend_reminder(
    tx: &mut PgConnection,
    id: &str,
    offset: i64,
) -> Result<(), sqlx::Error> {
    slack_posts::spend(
        tx,
        &format!("approval:{id}:reminder:{offset}"),
        "approval_reminder",
        id,
    )
    .await
}

/// Whether a Slack user may decide an approval now.
#[derive(Debug)]
pub enum Verdict {
    Allowed(ApprovalView),
    NotYours(ApprovalView),
    Decided(ApprovalView),
    PastDeadline(ApprovalView),
    Unknown,
}

/// Who may decide: the approver (their Slack id, or the team member their Slack identity is
/// matched to) or a member of `SLACK_APPROVER_GROUP`; only while pending and before the
/// deadline. `lock` locks the approval (a decision follows in `tx`).
pub async fn may_decide(
    tx: &mut PgConnection,
    client: Option<&crate::clients::slack::SlackClient>,
    settings: &crate::config::Settings,
    approval: &str,
    clicker: &str,
    lock: bool,
) -> Result<Verdict, WorkflowError> {
    let found = if lock {
        approvals::lock(tx, approval).await?
    } else {
        approvals::get(&mut *tx, approval).await?
    };
    let Some(a) = found else {
        return Ok(Verdict::Unknown);
    };
    let workspace = settings.slack.workspace();
    let mut allowed = a.slack_user_id.as_deref() == Some(clicker)
        || approvals::member_of_slack_user(tx, workspace, clicker)
            .await?
            .as_deref()
            == Some(a.approver_id.as_str());
    if !allowed && let (Some(group), Some(client)) = (&settings.workflows.approver_group, client) {
        match client.usergroup_members(group).await {
            Ok(members) => allowed = members.iter().any(|m| m == clicker),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the approver group; only the approver may decide")
            }
        }
    }
    Ok(if !allowed {
        Verdict::NotYours(a)
    } else if a.status != "pending" {
        Verdict::Decided(a)
    } else if a.deadline <= Utc::now() {
        Verdict::PastDeadline(a)
    } else {
        Verdict::Allowed(a)
    })
}

/// What a click that cannot decide is told.
pub fn refusal(v: &Verdict) -> Option<String> {
    match v {
        Verdict::Allowed(_) => None,
        Verdict::Unknown => Some("This approval is not known to campaign-sync.".to_owned()),
        Verdict::NotYours(a) => Some(format!(
            "This approval is not yours: the {} stage of this campaign is for its approver to decide.",
            a.stage
        )),
        Verdict::Decided(a) => Some(format!(
            "This approval was already decided: {}{}.",
            a.status.replace('_', " "),
            a.decided_by
                .as_ref()
                .map(|u| format!(" by <@{u}>"))
                .unwrap_or_default()
        )),
        Verdict::PastDeadline(a) => Some(format!(
            "The deadline of this approval passed ({}); it can no longer be decided.",
            render::when(a.deadline)
        )),
    }
}
