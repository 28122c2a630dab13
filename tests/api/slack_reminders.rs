//! Approvals over time and the rest of the Slack loop: a reminder in the DM's thread once
//! however often the job runs, expiry past the deadline, a member of the approver group
//! deciding, "Mute these DMs", and the campaign's pinned status card.

use std::time::Duration;

use campaign_sync::queue::{EnqueueOptions, Queue};
use serde_json::{Value, json};

use crate::helpers::{eventually, redis_conn};
use crate::slack_workflows::{World, recorded, world};

const WAIT: Duration = Duration::from_secs(60);

async fn run_job(w: &World, name: &str) {
    let queue = Queue::new(
        redis_conn().await,
        &w.app.redis_prefix,
        campaign_sync::queue::job::DEFAULT_QUEUE,
    );
    let options = EnqueueOptions {
        trigger: Some("manual".to_owned()),
        ..Default::default()
    };
    queue
        .enqueue(name, Value::Null, options)
        .await
        .expect("enqueue");
}

async fn setup(w: &World, campaign: &str, channel: &str, member: &str, email: &str) {
    let (status, body) = w
        .app
        .put_json(
            &format!("/api/campaigns/{campaign}"),
            &json!({ "name": "Autumn", "status": "draft" }),
        )
        .await;
    assert!(status < 300, "{body}");
    sqlx::query("INSERT INTO slack_channels (id, workspace_id, name, campaign_id) VALUES ($1, 'T0SANDBOX', 'campaign-autumn', $2)")
        .bind(channel)
        .bind(campaign)
        .execute(&w.app.db)
        .await
        .expect("mapping");
    let (status, body) = w
        .app
        .put_json(
            &format!("/api/team-members/{member}"),
            &json!({ "email": email, "name": "Bo" }),
        )
        .await;
    assert!(status < 300, "{body}");
}

async fn ask(
    w: &World,
    id: &str,
    campaign: &str,
    member: &str,
    deadline: chrono::DateTime<chrono::Utc>,
) {
    let body = json!({ "approvalId": id, "campaignId": campaign, "stage": "copy", "approverId": member, "deadline": deadline.to_rfc3339() });
    let r = w
        .app
        .client
        .post(w.app.url("/api/approvals"))
        .bearer_auth(&w.app.env["API_TOKEN"])
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
}

async fn dm_of(w: &World, id: &str) -> (String, String) {
    eventually(WAIT, "the approver's DM", || async {
        w.app.get_json(&format!("/api/approvals/{id}")).await.1["slackTs"].is_string()
    })
    .await;
    let (_, a) = w.app.get_json(&format!("/api/approvals/{id}")).await;
    (
        a["slackChannel"].as_str().unwrap_or("").to_owned(),
        a["slackTs"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn a_reminder_comes_once_in_the_thread_and_the_deadline_expires_the_approval() {
    let w = world(|env| {
        env.insert("APPROVAL_REMINDER_OFFSETS".into(), "20s".into());
    })
    .await;
    let (_, email) = w.users[1].clone();
    let channel = w.channels[4].clone();
    setup(&w, "autumn", &channel, "tm-bo", &email).await;
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(26);
    ask(&w, "apr-r", "autumn", "tm-bo", deadline).await;
    let (dm, ts) = dm_of(&w, "apr-r").await;
    // Just past the reminder point (deadline − 20 s), measured from the deadline rather
    // than from whenever the DM arrived, so a slow machine still lands inside the window;
    // then the job runs three times at once.
    let reminder_point = deadline - chrono::Duration::seconds(19);
    let until = (reminder_point - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(until).await;
    for _ in 0..3 {
        run_job(&w, "send_approval_reminders").await;
    }
    eventually(WAIT, "the reminder", || async {
        recorded(&w.sandbox).await["messages"]
            .to_string()
            .contains("Reminder")
    })
    .await;
    let rec = recorded(&w.sandbox).await;
    let reminders: Vec<&Value> = rec["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["channel"] == dm.as_str() && m["text"].as_str().unwrap_or("").starts_with("Reminder")
        })
        .collect();
    assert_eq!(reminders.len(), 1, "one reminder: {reminders:?}");
    assert_eq!(reminders[0]["thread_ts"], ts.as_str(), "in the DM's thread");
    assert_eq!(
        w.app.get_json("/api/approvals/apr-r").await.1["remindersSent"],
        1
    );
    // Past the deadline, the job expires it and everyone hears.
    let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(500)).await;
    run_job(&w, "send_approval_reminders").await;
    eventually(WAIT, "the approval to expire and be announced", || async {
        let rec = recorded(&w.sandbox).await;
        let updated = rec["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["ts"] == ts.as_str() && m["updates"] == 1);
        let told = rec["messages"].as_array().into_iter().flatten().any(|m| {
            m["channel"] == channel.as_str()
                && m["thread_ts"].is_string()
                && m["text"].as_str().unwrap_or("").starts_with("Expired")
        });
        updated && told
    })
    .await;
    assert_eq!(
        w.app.get_json("/api/approvals/apr-r").await.1["status"],
        "expired"
    );
    w.worker.stop().await;
}

#[tokio::test]
async fn a_member_of_the_approver_group_decides_and_mute_stops_the_dms() {
    // S0SANDBX2 is the sandbox's "approvers" group.
    let w = world(|env| {
        env.insert("SLACK_APPROVER_GROUP".into(), "S0SANDBX2".into());
    })
    .await;
    let members = crate::slack_workflows::slack(
        &w.sandbox,
        "usergroups.users.list",
        &[("usergroup", "S0SANDBX2")],
    )
    .await;
    let (approver, email) = w.users[0].clone();
    let deputy = members["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|u| *u != approver)
        .expect("a group member who is not the approver")
        .to_owned();
    let channel = w.channels[5].clone();
    setup(&w, "autumn", &channel, "tm-ada", &email).await;
    ask(
        &w,
        "apr-g",
        "autumn",
        "tm-ada",
        chrono::Utc::now() + chrono::Duration::hours(3),
    )
    .await;
    let (dm, ts) = dm_of(&w, "apr-g").await;
    let click = |action: &'static str, user: String| {
        let body = json!({ "action_id": action, "value": if action == "mute_dms" { "tm-ada" } else { "apr-g" }, "channel": dm, "message_ts": ts, "user": user });
        let url = format!("{}/_sandbox/slack/interactions", w.sandbox.base_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("click")
        }
    };
    click("reject", deputy.clone()).await;
    eventually(WAIT, "the deputy's rejection", || async {
        w.app.get_json("/api/approvals/apr-g").await.1["status"] == "rejected"
    })
    .await;
    assert_eq!(
        w.app.get_json("/api/approvals/apr-g").await.1["decidedBy"],
        deputy.as_str()
    );
    // The approver mutes DMs from the DM itself; the next DM is skipped.
    click("mute_dms", approver.clone()).await;
    eventually(WAIT, "DMs to be muted", || async {
        w.app.get_json("/api/team-members/tm-ada").await.1["slackDmsMuted"] == true
    })
    .await;
    let r = w.app.client.post(w.app.url("/api/notifications")).bearer_auth(&w.app.env["API_TOKEN"])
        .header("idempotency-key", "after-mute")
        .json(&json!({ "type": "task_assigned", "campaignId": "autumn", "campaignName": "Autumn", "userId": "tm-ada", "message": "Proofread" }))
        .send().await.expect("post");
    let n: Value = r.json().await.expect("json");
    let id = n["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "the notification to settle", || async {
        w.app.get_json(&format!("/api/notifications/{id}")).await.1["status"] == "partial"
    })
    .await;
    let (_, view) = w.app.get_json(&format!("/api/notifications/{id}")).await;
    let dm_delivery = view["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["target"] == "dm")
        .expect("dm delivery");
    assert_eq!(dm_delivery["status"], "skipped", "{view}");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'team_member.dms_muted'")
            .fetch_one(&w.app.db)
            .await
            .expect("audit");
    assert_eq!(audited, 1);
    w.worker.stop().await;
}

#[tokio::test]
async fn a_status_change_is_announced_and_the_pinned_card_kept_current() {
    let w = world(|_| {}).await;
    let (_, email) = w.users[2].clone();
    let channel = w.channels[1].clone();
    setup(&w, "autumn", &channel, "tm-cy", &email).await;
    let card = || async {
        let rec = recorded(&w.sandbox).await;
        rec["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["channel"] == channel.as_str() && m["pinned"] == true)
            .cloned()
    };
    // Created before its channel was mapped, the card may have had nowhere to go: the next
    // change posts it.
    let (status, _) = w
        .app
        .put_json(
            "/api/campaigns/autumn",
            &json!({ "name": "Autumn", "status": "scheduled" }),
        )
        .await;
    assert_eq!(status, 200);
    eventually(WAIT, "the pinned status card", || async {
        card()
            .await
            .is_some_and(|c| c["text"].as_str().unwrap_or("").ends_with("scheduled"))
    })
    .await;
    let before = card()
        .await
        .map(|c| c["updates"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    let (status, _) = w
        .app
        .put_json(
            "/api/campaigns/autumn",
            &json!({ "name": "Autumn", "status": "active" }),
        )
        .await;
    assert_eq!(status, 200);
    eventually(WAIT, "the card to say active", || async {
        card().await.is_some_and(|c| {
            c["text"].as_str().unwrap_or("").ends_with("active")
                && c["updates"].as_u64() == Some(before + 1)
        })
    })
    .await;
    let notices = || async {
        let rec = recorded(&w.sandbox).await;
        rec["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m["channel"] == channel.as_str()
                    && m["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains("Status changed from scheduled to active")
            })
            .count()
    };
    eventually(WAIT, "the status_change notice", || async {
        notices().await >= 1
    })
    .await;
    assert_eq!(notices().await, 1);
    let rec = recorded(&w.sandbox).await;
    let pinned = rec["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["pinned"] == true)
        .count();
    assert_eq!(pinned, 1, "one card per campaign channel");
    w.worker.stop().await;
}
