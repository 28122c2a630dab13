//! The demo's Slack loop, so a newcomer sees it work: every `EVERY`, a notification to a demo
//! campaign's channel and an approval for its approver; once the approver's DM is posted the
//! sandbox clicks it — Approve, Reject, or first a click by someone else (refused, audited)
//! and then Approve — exactly as Slack would deliver the click, signed; then two people talk
//! in the campaign's channel (team activity).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::jobs::deliver_slack_posts;
use crate::jobs::support::workflow;
use crate::store::approvals::{ApprovalInput, Labels};
use crate::store::audit::Actor;
use crate::store::notifications::NotificationInput;

/// How often a round starts.
const EVERY: Duration = Duration::from_secs(30);
/// The first rounds wait for the channel and user syncs to map channels and members.
const FIRST_AFTER: Duration = Duration::from_secs(35);

/// What a round needs.
pub struct Loop {
    pub db: sqlx::PgPool,
    pub redis: redis::aio::ConnectionManager,
    pub prefix: String,
    /// The sandbox's base URL (its click emitter).
    pub sandbox: String,
    /// A Slack user who is nobody's approver (the refused click).
    pub stranger: String,
}

/// Runs rounds until `stop`.
pub async fn run(l: Loop, mut stop: watch::Receiver<bool>) {
    let mut round = 0u32;
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        wait = EVERY;
        round += 1;
        if let Err(e) = one_round(&l, round).await {
            tracing::warn!(error = %e, round, "demo Slack round failed");
        }
    }
}

/// Round `round`'s notification and approval, stored and kicked: (campaign, notification id,
/// approval id).
async fn ask(l: &Loop, round: u32) -> anyhow::Result<(String, uuid::Uuid, String)> {
    let campaign = format!("demo-campaign-{}", (round - 1) % 3 + 1);
    let actor = Actor::new("demo");
    let note = NotificationInput {
        kind: "milestone_reached".to_owned(),
        campaign_id: campaign.clone(),
        campaign_name: format!("Demo campaign {}", (round - 1) % 3 + 1),
        channel_id: None,
        user_id: None,
        message: format!("Round {round}: {} opens so far", 1000 * round),
        attachments: Vec::new(),
        actions: Vec::new(),
    };
    let (n, _) = workflow::accept_notification(
        &l.db,
        &format!("demo-note-{round}-{}", uuid::Uuid::new_v4().simple()),
        &note,
        &actor,
    )
    .await?;
    let approval = format!(
        "demo-approval-{round}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let input = ApprovalInput {
        approval_id: approval.clone(),
        campaign_id: campaign.clone(),
        stage: format!("round {round} copy"),
        approver_id: "demo-member-1".to_owned(),
        slack_user_id: None,
        deadline: chrono::Utc::now() + chrono::Duration::hours(2),
        actions: Labels::default(),
    };
    workflow::accept_approval(&l.db, &input, &actor).await?;
    deliver_slack_posts::kick_or_log(l.redis.clone(), &l.prefix, "demo").await;
    Ok((campaign, n.id, approval))
}

async fn one_round(l: &Loop, round: u32) -> anyhow::Result<()> {
    let (campaign, note, approval) = ask(l, round).await?;
    println!(
        "  demo       round {round}: notification {note} to {campaign}, approval {approval} asked of demo-member-1",
    );
    let Some((channel, ts, approver)) = wait_for_dm(&l.db, &approval).await? else {
        println!(
            "  demo       approval {approval}: no DM yet (are the user and channel syncs done?); left pending"
        );
        return Ok(());
    };
    let http = reqwest::Client::new();
    let click = |action: &'static str, user: String| {
        let body = json!({ "action_id": action, "value": approval, "channel": channel, "message_ts": ts, "user": user });
        let http = http.clone();
        let url = format!("{}/_sandbox/slack/interactions", l.sandbox);
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await?
                .json::<Value>()
                .await
        }
    };
    let told = match round % 3 {
        1 => {
            click("approve", approver.clone()).await?;
            "the approver clicked Approve"
        }
        2 => {
            click("reject", approver.clone()).await?;
            "the approver clicked Reject"
        }
        _ => {
            click("approve", l.stranger.clone()).await?;
            click("approve", approver.clone()).await?;
            "someone else clicked first (refused, audited), then the approver approved"
        }
    };
    println!(
        "  demo       approval {approval}: {told}; see GET /api/approvals/{approval} and {}/_sandbox/slack/messages",
        l.sandbox
    );
    chatter(l, &http, &campaign, [approver, l.stranger.clone()]).await
}

/// The team talks in the campaign's channel (a message and a reply in its thread), as Slack
/// would deliver it: what `/api/analytics/team` counts once `rollup_metrics` has run.
async fn chatter(
    l: &Loop,
    http: &reqwest::Client,
    campaign: &str,
    people: [String; 2],
) -> anyhow::Result<()> {
    let Some(channel) = crate::store::slack_posts::campaign_channel(&l.db, campaign).await? else {
        return Ok(());
    };
    let url = format!("{}/_sandbox/slack/events", l.sandbox);
    let first: Value = http
        .post(&url)
        .json(&json!({ "type": "message", "user": people[0], "channel": channel, "text": "Copy looks good to me" }))
        .send()
        .await?
        .json()
        .await?;
    let parent = first
        .pointer("/envelope/event/ts")
        .cloned()
        .unwrap_or(Value::Null);
    http.post(&url)
        .json(&json!({ "type": "message", "user": people[1], "channel": channel, "text": "Agreed, shipping it", "thread_ts": parent }))
        .send()
        .await?;
    Ok(())
}

/// The approver's DM (channel, ts, Slack user) once posted; None after 20 s.
async fn wait_for_dm(
    db: &sqlx::PgPool,
    approval: &str,
) -> anyhow::Result<Option<(String, String, String)>> {
    for _ in 0..100 {
        let view = crate::store::approvals::get(db, approval).await?;
        if let Some(a) = view
            && let (Some(c), Some(t), Some(u)) = (a.slack_channel, a.slack_ts, a.slack_user_id)
        {
            return Ok(Some((c, t, u)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(None)
}
