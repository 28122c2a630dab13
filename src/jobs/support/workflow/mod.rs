//! The Slack workflows' changes, each in one transaction with the posts and webhooks it
//! causes: a notification accepted, an approval asked for, decided or expired, a reminder
//! due, a campaign's status changed. What is written here is delivered by
//! `deliver_slack_posts` and `deliver_outgoing_webhooks`.

mod approvals;
mod status;

pub use approvals::{
    Verdict, accept_approval, announce_outcome, may_decide, queue_reminder, refusal, spend_reminder,
};
pub use status::announce_status_changes;

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::render;
use crate::store::audit::{self, Actor};
use crate::store::notifications::{self, NotificationInput, NotificationView};
use crate::store::slack_posts::{self, NewPost};
use crate::store::validate::FieldError;

/// Why a request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Well-formed, but the data refuses it (a 422).
    #[error("{0}")]
    Unknown(FieldError),
    /// The key or id is taken by a different request (a 409).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub(super) fn unknown(field: &str, problem: String, expected: &str) -> WorkflowError {
    WorkflowError::Unknown(FieldError::new(field, problem, expected))
}

pub(super) async fn check_campaign(tx: &mut PgConnection, id: &str) -> Result<(), WorkflowError> {
    match notifications::campaign_active(tx, id).await? {
        None => Err(unknown(
            "campaignId",
            format!("no campaign {id:?}"),
            "the id of a campaign sent to PUT /api/campaigns/{id}",
        )),
        Some(false) => Err(unknown(
            "campaignId",
            format!("campaign {id:?} is deactivated"),
            "an active campaign",
        )),
        Some(true) => Ok(()),
    }
}

pub(super) async fn check_member(
    tx: &mut PgConnection,
    field: &str,
    id: &str,
) -> Result<(), WorkflowError> {
    if notifications::member_exists(tx, id).await? {
        Ok(())
    } else {
        Err(unknown(
            field,
            format!("no team member {id:?}"),
            "the id of a team member sent to PUT /api/team-members/{id}",
        ))
    }
}

/// Stores a notification and its posts under `key`: (the notification, created now). The
/// same key and body again give back the first; another body under the key is refused.
pub async fn accept_notification(
    db: &PgPool,
    key: &str,
    input: &NotificationInput,
    actor: &Actor,
) -> Result<(NotificationView, bool), WorkflowError> {
    let replay = |(view, hash): (NotificationView, String)| {
        if hash == input.fingerprint() {
            Ok((view, false))
        } else {
            Err(WorkflowError::Conflict(format!(
                "the Idempotency-Key was already used for a different notification ({}); use a new key for a new notification",
                view.id
            )))
        }
    };
    if let Some(existing) = notifications::by_key(db, key).await? {
        return replay(existing);
    }
    let mut tx = db.begin().await?;
    check_campaign(&mut tx, &input.campaign_id).await?;
    if let Some(user) = &input.user_id {
        check_member(&mut tx, "userId", user).await?;
    }
    let Some(id) = notifications::insert(&mut tx, key, input).await? else {
        tx.rollback().await?;
        let existing = notifications::by_key(db, key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return replay(existing);
    };
    for post in notification_posts(&mut tx, id, input).await? {
        slack_posts::enqueue(&mut tx, &post).await?;
    }
    audit::record(&mut tx, actor, "notification.accepted", "notification", &id.to_string(),
        json!({ "type": input.kind, "campaign_id": input.campaign_id, "channel_id": input.channel_id, "user_id": input.user_id, "idempotency_key": key })).await?;
    tx.commit().await?;
    metrics::counter!("slack_notifications_accepted_total", "type" => input.kind.clone())
        .increment(1);
    let view = notifications::get(db, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((view, true))
}

/// The posts of a notification: a DM to `userId`; a channel message to `channelId`, or to
/// the campaign's channel when no `userId` is given; `task_assigned` with a `userId` also
/// replies in the campaign's task thread.
async fn notification_posts(
    tx: &mut PgConnection,
    id: Uuid,
    n: &NotificationInput,
) -> Result<Vec<NewPost>, sqlx::Error> {
    let base = NewPost {
        kind: "notification",
        campaign_id: Some(n.campaign_id.clone()),
        notification_id: Some(id),
        ..Default::default()
    };
    let mut posts = Vec::new();
    if let Some(member) = &n.user_id {
        let r = render::notification(n, Some(member));
        posts.push(NewPost {
            dedupe_key: format!("notification:{id}:dm"),
            dm_member: Some(member.clone()),
            text: r.text,
            blocks: r.blocks,
            attachments: r.attachments,
            ..base.clone()
        });
    }
    let to_channel = n.channel_id.is_some() || n.user_id.is_none() || n.kind == "task_assigned";
    if to_channel {
        let r = render::notification(n, None);
        let thread_of = if n.kind == "task_assigned" {
            Some(
                task_thread(
                    tx,
                    &n.campaign_id,
                    &n.campaign_name,
                    n.channel_id.as_deref(),
                )
                .await?,
            )
        } else {
            None
        };
        posts.push(NewPost {
            dedupe_key: format!("notification:{id}:channel"),
            channel_id: n.channel_id.clone(),
            to_campaign_channel: n.channel_id.is_none(),
            thread_of,
            text: r.text,
            blocks: r.blocks,
            attachments: r.attachments,
            ..base
        });
    }
    Ok(posts)
}

/// The campaign's task thread in `channel` (or its mapped channel), queued on first use.
async fn task_thread(
    tx: &mut PgConnection,
    campaign: &str,
    name: &str,
    channel: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    let r = render::task_thread(name);
    let post = NewPost {
        dedupe_key: format!("campaign:{campaign}:tasks:{}", channel.unwrap_or("mapped")),
        kind: "task_thread",
        campaign_id: Some(campaign.to_owned()),
        channel_id: channel.map(str::to_owned),
        to_campaign_channel: channel.is_none(),
        text: r.text,
        blocks: r.blocks,
        ..Default::default()
    };
    Ok(slack_posts::enqueue(tx, &post).await?.0)
}

/// Where an answer to a click goes: the click's `response_url` (seen by the clicker alone,
/// wherever they clicked), else `chat.postEphemeral` in its channel.
#[derive(Debug, Clone, Copy)]
pub struct AnswerTo<'a> {
    pub channel: &'a str,
    pub user: &'a str,
    pub response_url: Option<&'a str>,
}

/// Shows `text` to the clicker alone (an answer to their click).
pub async fn ephemeral(
    tx: &mut PgConnection,
    key: &str,
    to: AnswerTo<'_>,
    text: &str,
) -> Result<(), sqlx::Error> {
    slack_posts::enqueue(
        tx,
        &NewPost {
            dedupe_key: format!("ephemeral:{key}"),
            kind: "ephemeral",
            op: "ephemeral",
            channel_id: Some(to.channel.to_owned()),
            ephemeral_user: Some(to.user.to_owned()),
            response_url: to.response_url.map(str::to_owned),
            text: text.to_owned(),
            ..Default::default()
        },
    )
    .await
    .map(|_| ())
}
