//! Data-subject requests and retention against real Postgres: `GET /api/people/{email}`
//! exports what is held, `DELETE` erases it everywhere in one transaction — afterwards no
//! table holds the address in any column (every table of the schema is searched as text),
//! other people are untouched, the suppression still suppresses, the audit names only the
//! hash — and `people erase` does the same from the CLI. Retention pseudonymises old sends.

use std::process::Command;

use campaign_sync::store::people::pseudonym;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .expect("seed");
}

/// Ada and Bob, each with a send, events, raw payloads; Ada also a team member with a Slack
/// identity and messages, a suppression, a rejected delivery and an outgoing webhook.
async fn seed(db: &PgPool) {
    exec(db, r#"
        INSERT INTO campaigns (id, name, status) VALUES ('spring', 'Spring', 'active');
        INSERT INTO team_members (id, email, name) VALUES ('ada', 'Ada@Example.com', 'Ada Lovelace');
        INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username, real_name) VALUES ('ada', 'T1', 'U0ADA', 'ada', 'Ada Lovelace');
        INSERT INTO slack_messages (channel_id, ts, user_id, posted_at) VALUES ('C1', '1.000001', 'U0ADA', now()), ('C1', '1.000002', 'U0BOB', now());
        INSERT INTO approvals (id, campaign_id, stage, approver_id, deadline) VALUES ('ap-1', 'spring', 'legal', 'ada', now() + interval '2 days');
        INSERT INTO email_requests (id, idempotency_key, request_hash, campaign_id, template_id, recipient_count, status)
            VALUES ('00000000-0000-0000-0000-0000000000a1', 'p-1', 'h', 'spring', 1, 3, 'sending');
        INSERT INTO email_sends (id, request_id, email, name, variables, status, sent_at) VALUES
            ('00000000-0000-0000-0000-00000000a0a0', '00000000-0000-0000-0000-0000000000a1', 'ada@example.com', 'Ada', '{"first_name": "Ada"}', 'sent', now()),
            ('00000000-0000-0000-0000-00000000b0b0', '00000000-0000-0000-0000-0000000000a1', 'bob@example.com', 'Bob', '{"first_name": "Bob"}', 'sent', now()),
            ('00000000-0000-0000-0000-00000000c0c0', '00000000-0000-0000-0000-0000000000a1', 'ada.second@example.com', 'Ada', '{}', 'pending', NULL);
        INSERT INTO webhook_events (id, source, external_id, event_type, payload, status) OVERRIDING SYSTEM VALUE VALUES
            (901, 'mailjet', 'm-ada', 'open', '{"event": "open", "email": "ada@example.com", "CustomID": "00000000-0000-0000-0000-00000000a0a0"}', 'processed'),
            (902, 'mailjet', 'm-bob', 'open', '{"event": "open", "email": "bob@example.com"}', 'processed'),
            (903, 'slack_events', 'Ev-ada', 'user_change', '{"event": {"user": {"profile": {"email": "ADA@example.com"}}}}', 'received');
        INSERT INTO email_events (send_id, webhook_event_id, event_type, occurred_at, details) VALUES
            ('00000000-0000-0000-0000-00000000a0a0', 901, 'open', now(), '{"email": "ada@example.com", "ip": "192.0.2.1"}'),
            ('00000000-0000-0000-0000-00000000b0b0', 902, 'open', now(), '{"email": "bob@example.com"}');
        INSERT INTO email_suppressions (email, reason, source) VALUES ('ada@example.com', 'unsubscribe', 'mailjet');
        INSERT INTO webhook_rejections (source, position, raw, digest, reason) VALUES
            ('mailjet', 0, convert_to('{"event":"open","email":"ada@example.com"}', 'UTF8'), repeat('a', 64), 'missing field MessageID'),
            ('mailjet', 0, convert_to('{"event":"open","email":"bob@example.com"}', 'UTF8'), repeat('b', 64), 'missing field MessageID');
        INSERT INTO outgoing_webhooks (dedupe_key, event_type, payload, status) VALUES
            ('d-1', 'approval.decided', '{"approver": {"email": "ada@example.com"}}', 'delivered');
    "#).await;
}

/// Every table of the schema whose rows, as text, hold `needle` (case-insensitive).
async fn tables_holding(db: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(db)
    .await
    .expect("tables");
    let mut holding = Vec::new();
    for table in tables {
        let bytes: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND data_type = 'bytea'",
        )
        .bind(&table)
        .fetch_all(db)
        .await
        .expect("columns");
        let raw: String = bytes
            .iter()
            .map(|c| format!(" OR strpos(lower(encode(\"{c}\", 'escape')), $1) > 0"))
            .collect();
        let sql =
            format!("SELECT count(*) FROM \"{table}\" t WHERE strpos(lower(t::text), $1) > 0{raw}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle.to_lowercase())
            .fetch_one(db)
            .await
            .expect("count");
        if n > 0 {
            holding.push(table);
        }
    }
    holding
}

async fn call(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, Value) {
    app.call_json(method, path, None).await
}

#[tokio::test]
async fn a_person_is_exported_then_erased_everywhere_and_their_suppression_still_holds() {
    let app = spawn_app().await;
    seed(&app.db).await;
    let (status, held) = call(&app, reqwest::Method::GET, "/api/people/ADA@example.com").await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["teamMember"]["id"], "ada");
    assert_eq!(held["slackIdentities"][0]["slackUserId"], "U0ADA");
    assert_eq!(held["sends"].as_array().map(Vec::len), Some(1), "{held}");
    assert_eq!(held["sends"][0]["events"][0]["details"]["ip"], "192.0.2.1");
    assert_eq!(held["suppression"]["reason"], "unsubscribe");
    assert_eq!(held["webhookPayloadsNamingThem"], 2);
    assert!(!tables_holding(&app.db, "ada@example.com").await.is_empty());

    let (status, erased) = call(&app, reqwest::Method::DELETE, "/api/people/Ada@Example.com").await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["sendsPseudonymised"], 1);
    assert_eq!(erased["eventsCleared"], 1);
    assert_eq!(erased["webhookPayloadsErased"], 2);
    assert_eq!(erased["rejectedDeliveriesDeleted"], 1);
    assert_eq!(erased["suppressionsHashed"], 1);
    assert_eq!(erased["teamMembersPseudonymised"], 1);
    assert_eq!(erased["slackIdentitiesDeleted"], 1);
    assert_eq!(erased["slackMessagesPseudonymised"], 1);
    assert_eq!(erased["outgoingPayloadsErased"], 1);
    assert_eq!(
        tables_holding(&app.db, "ada@example.com").await,
        Vec::<String>::new(),
        "no table holds the address"
    );
    assert_eq!(
        tables_holding(&app.db, "Ada Lovelace").await,
        Vec::<String>::new(),
        "nor the name"
    );
    let bob = tables_holding(&app.db, "bob@example.com").await;
    for table in [
        "email_sends",
        "email_events",
        "webhook_events",
        "webhook_rejections",
    ] {
        assert!(
            bob.contains(&table.to_owned()),
            "Bob is untouched in {table}: {bob:?}"
        );
    }
    let approver: String =
        sqlx::query_scalar("SELECT approver_id FROM approvals WHERE id = 'ap-1'")
            .fetch_one(&app.db)
            .await
            .expect("approval");
    assert!(
        approver.starts_with("erased-"),
        "the approval follows the member's new id: {approver}"
    );
    let unapplied: String = sqlx::query_scalar("SELECT status FROM webhook_events WHERE id = 903")
        .fetch_one(&app.db)
        .await
        .expect("event");
    assert_eq!(
        unapplied, "ignored",
        "an unapplied event naming them is not applied any more"
    );

    let hash = pseudonym("ada@example.com");
    let audit: (String, String, Value) = sqlx::query_as(
        "SELECT actor, entity_id, details FROM audit_log WHERE action = 'person.erase'",
    )
    .fetch_one(&app.db)
    .await
    .expect("audit");
    assert_eq!((audit.0.as_str(), audit.1.as_str()), ("api", hash.as_str()));

    exec(&app.db, "INSERT INTO email_requests (id, idempotency_key, request_hash, campaign_id, template_id, recipient_count, status)
        VALUES ('00000000-0000-0000-0000-0000000000a2', 'p-2', 'h', 'spring', 1, 1, 'accepted');
        INSERT INTO email_sends (request_id, email) VALUES ('00000000-0000-0000-0000-0000000000a2', 'ADA@example.com');").await;
    let claimed = campaign_sync::store::email_sends::claim_due(&app.db, 10)
        .await
        .expect("claim");
    let ada: Vec<_> = claimed
        .iter()
        .filter(|(c, _)| c.email == "ADA@example.com")
        .collect();
    assert_eq!(ada.len(), 1);
    assert_eq!(
        ada[0].1, "suppressed",
        "the hashed suppression still suppresses"
    );

    let (status, again) = call(&app, reqwest::Method::DELETE, "/api/people/ada@example.com").await;
    assert_eq!(status, 200);
    assert_eq!(
        again["teamMembersPseudonymised"], 0,
        "erasing again changes nothing: {again}"
    );
    let (status, exported) = call(&app, reqwest::Method::GET, "/api/people/ada@example.com").await;
    assert_eq!(status, 200);
    assert!(
        exported["erasedAt"].is_string() && exported["teamMember"].is_null(),
        "{exported}"
    );
    for bad in [
        "/api/people/not-an-address",
        "/api/people/a%20b@example.com",
        "/api/people/@example.com",
    ] {
        let (status, body) = call(&app, reqwest::Method::DELETE, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("email"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn people_erase_asks_for_yes_and_retention_pseudonymises_old_sends() {
    let app = spawn_app().await;
    seed(&app.db).await;
    let run = |args: &[&str]| {
        Command::new(BIN)
            .env_clear()
            .envs(&app.env)
            .args(args)
            .output()
            .expect("run")
    };
    let dry = run(&["people", "erase", "bob@example.com"]);
    assert_eq!(dry.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dry.stderr).contains("1 send(s)"));
    assert!(
        !tables_holding(&app.db, "bob@example.com").await.is_empty(),
        "nothing changed without --yes"
    );
    let done = run(&["people", "erase", "bob@example.com", "--yes"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        tables_holding(&app.db, "bob@example.com").await,
        Vec::<String>::new()
    );
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_log WHERE action = 'person.erase'")
            .fetch_one(&app.db)
            .await
            .expect("audit");
    assert_eq!(actor, "cli");

    exec(
        &app.db,
        "UPDATE email_sends SET updated_at = now() - interval '500 days' WHERE status = 'sent';
                   UPDATE email_events SET created_at = now() - interval '500 days';",
    )
    .await;
    let counts = campaign_sync::jobs::purge_expired_data::purge(&app.db, &app.settings.retention)
        .await
        .expect("purge");
    let pseudonymised = counts
        .iter()
        .find(|(k, _)| *k == "recipients_pseudonymised")
        .map(|(_, n)| *n);
    assert_eq!(
        pseudonymised,
        Some(1),
        "Ada's settled send (Bob's was erased already): {counts:?}"
    );
    let still = tables_holding(&app.db, "ada@example.com").await;
    assert!(
        !still.contains(&"email_sends".to_owned()) && !still.contains(&"email_events".to_owned()),
        "old sends and events no longer hold the address: {still:?}"
    );
    assert!(
        still.contains(&"team_members".to_owned()),
        "retention is not an erasure: {still:?}"
    );
    let pending: String = sqlx::query_scalar(
        "SELECT email FROM email_sends WHERE id = '00000000-0000-0000-0000-00000000c0c0'",
    )
    .fetch_one(&app.db)
    .await
    .expect("pending");
    assert_eq!(
        pending, "ada.second@example.com",
        "an unsettled send keeps its address"
    );
    let doctor = run(&["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("recipients of settled sends pseudonymised after 400 days"),
        "{report}"
    );
}
