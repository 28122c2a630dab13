//! The audit trail from outside: API actions leave entries with actor, action, subject,
//! request id and outcome — never an address; `GET /api/audit` filters them and pages through
//! all of them by cursor without a gap or a repeat; bad filters get a 400 naming the
//! parameter; `audit tail` prints them, and `--follow` prints what is written after it began.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

async fn audit(app: &TestApp, query: &str) -> (u16, Value) {
    app.get_json(&format!("/api/audit?{query}")).await
}

async fn act(app: &TestApp) {
    for i in 0..12 {
        let (status, body) = app
            .put_json(
                &format!("/api/campaigns/c{i}"),
                &json!({ "name": format!("Campaign {i}"), "status": "active" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = app
        .put_json(
            "/api/team-members/ada",
            &json!({ "email": "Ada@Example.com", "name": "Ada" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .put_json(
            "/api/team-members/ada",
            &json!({ "email": "ada.l@example.com", "name": "Ada" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .put_json(
            "/api/campaigns/c1/revenue/2026-11-30",
            &json!({ "amount": 12.5 }),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn every_api_action_is_audited_without_addresses_and_pages_through_by_cursor() {
    let app = spawn_app().await;
    act(&app).await;
    let (status, page) = audit(&app, "limit=500").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items").clone();
    assert_eq!(
        items.len(),
        15,
        "12 campaigns, a member created and updated, a revenue: {page}"
    );
    assert_eq!(items[0]["action"], "revenue.put", "newest first");
    for item in &items {
        assert_eq!(item["actor"], "api");
        assert_eq!(item["outcome"], "ok");
        assert!(
            item["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{item}"
        );
        assert!(
            !item.to_string().to_lowercase().contains("example.com"),
            "no address: {item}"
        );
    }
    let (_, member) = audit(&app, "subjectType=team_member&subjectId=ada").await;
    let member = member["items"].as_array().expect("items").clone();
    assert_eq!(member.len(), 2);
    assert_eq!(
        member[0]["details"]["email"]["to"],
        campaign_sync::store::people::pseudonym("ada.l@example.com"),
        "a changed address is audited as its pseudonym"
    );
    let (_, revenue) = audit(&app, "action=revenue.put").await;
    assert_eq!(revenue["items"][0]["entityId"], "c1");

    let mut seen = HashSet::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(c) => format!("limit=4&before={c}"),
            None => "limit=4".to_owned(),
        };
        let (status, page) = audit(&app, &query).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            assert!(
                seen.insert(item["id"].as_i64().expect("id")),
                "a repeat: {item}"
            );
        }
        match page["nextBefore"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 15, "every entry once");

    for (query, field, code) in [
        ("limit=0", "limit", 400),
        ("before=yesterday", "before", 400),
        ("action=", "action", 400),
        ("since=not-a-time", "since", 400),
        ("colour=blue", "colour", 400),
        ("subjectId=ada", "subjectId", 422),
        (
            "since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            "since",
            422,
        ),
    ] {
        let (status, body) = audit(&app, query).await;
        assert_eq!(status, code, "{query}: {body}");
        assert!(
            body.to_string().contains(field),
            "{query} names {field}: {body}"
        );
    }
    let (status, future) = audit(&app, "since=2099-01-01T00:00:00Z").await;
    assert_eq!(
        (status, future["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn audit_tail_prints_the_newest_and_follows_new_entries() {
    let app = spawn_app().await;
    act(&app).await;
    let out = Command::new(BIN)
        .env_clear()
        .envs(&app.env)
        .args(["audit", "tail", "-n", "3"])
        .output()
        .expect("tail");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].contains("revenue.put") && lines[2].contains("campaign/c1"),
        "oldest first, newest last: {text}"
    );

    let mut follow = Command::new(BIN)
        .env_clear()
        .envs(&app.env)
        .args([
            "audit",
            "tail",
            "-n",
            "1",
            "--follow",
            "--json",
            "--action",
            "campaign.created",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("follow");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the newest entry");
    assert!(first.contains("\"campaign.created\""), "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = app
        .put_json(
            "/api/campaigns/late",
            &json!({ "name": "Late", "status": "active" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .put_json(
            "/api/campaigns/c1/revenue/2026-11-29",
            &json!({ "amount": 1.0 }),
        )
        .await;
    assert_eq!(status, 200);
    let next = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the new entry");
    let entry: Value = serde_json::from_str(&next).expect("json line");
    assert_eq!(
        (entry["action"].as_str(), entry["entityId"].as_str()),
        (Some("campaign.created"), Some("late"))
    );
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "the other action is filtered out"
    );
    let _ = follow.kill();
    let _ = follow.wait();
}
