//! Campaign status in Slack: each status not yet announced gets a `status_change` notice in
//! the campaign's channel, and the channel's pinned status card is kept current.

use chrono::Utc;
use sqlx::{PgConnection, PgPool};

use super::render;
use crate::store::notifications::NotificationInput;
use crate::store::slack_posts::{self, NewPost};

/// Announces every campaign status not yet announced (however it changed: one PUT, a batch,
/// an import); how many.
pub async fn announce_status_changes(db: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin().await?;
    let changes = slack_posts::take_status_changes(&mut tx).await?;
    for c in &changes {
        status_changed(
            &mut tx,
            &c.id,
            &c.name,
            c.from_status.as_deref(),
            &c.to_status,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(changes.len())
}

/// A campaign's status changed: a `status_change` notice in its channel and its pinned status
/// card brought up to date (posted and pinned the first time).
async fn status_changed(
    tx: &mut PgConnection,
    campaign: &str,
    name: &str,
    from: Option<&str>,
    to: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let notice = NotificationInput {
        kind: "status_change".to_owned(),
        campaign_id: campaign.to_owned(),
        campaign_name: name.to_owned(),
        channel_id: None,
        user_id: None,
        message: match from {
            Some(from) => format!("Status changed from {from} to {to}."),
            None => format!("Campaign created with status {to}."),
        },
        attachments: Vec::new(),
        actions: Vec::new(),
    };
    let r = render::notification(&notice, None);
    let stamp = now.timestamp_micros();
    slack_posts::enqueue(
        tx,
        &NewPost {
            dedupe_key: format!("campaign:{campaign}:status:{stamp}"),
            kind: "notification",
            campaign_id: Some(campaign.to_owned()),
            to_campaign_channel: true,
            text: r.text,
            blocks: r.blocks,
            ..Default::default()
        },
    )
    .await?;
    refresh_card(tx, campaign, name, to).await
}

/// Posts (and pins) the campaign's status card the first time (or again when it could not be
/// posted); later, changes it in place.
async fn refresh_card(
    tx: &mut PgConnection,
    campaign: &str,
    name: &str,
    to: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let stamp = now.timestamp_micros();
    let card = render::status_card(campaign, name, to, now);
    let (card_id, new) = slack_posts::enqueue(
        tx,
        &NewPost {
            dedupe_key: format!("campaign:{campaign}:card"),
            kind: "status_card",
            campaign_id: Some(campaign.to_owned()),
            to_campaign_channel: true,
            pin: true,
            text: card.text.clone(),
            blocks: card.blocks.clone(),
            ..Default::default()
        },
    )
    .await?;
    // A card that had nowhere to go (no channel mapped yet) is posted now instead.
    let revived = !new && slack_posts::revive(tx, card_id, &card.text, &card.blocks).await?;
    if !new && !revived {
        slack_posts::enqueue(
            tx,
            &NewPost {
                dedupe_key: format!("campaign:{campaign}:card:{stamp}"),
                kind: "status_card_update",
                op: "update",
                campaign_id: Some(campaign.to_owned()),
                target_post: Some(card_id),
                text: card.text,
                blocks: card.blocks,
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}
