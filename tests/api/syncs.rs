//! The scheduled syncs against the sandbox.

use std::net::SocketAddr;
use std::time::Duration;

use campaign_sync::queue::{EnqueueOptions, Queue};
use campaign_sync::sandbox::data::World;
use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{
    TestWorker, eventually, migrated_database, redis_conn, test_env, worker_settings,
};

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

#[tokio::test]
async fn sync_mailjet_stats_snapshots_mapped_campaigns_maps_by_subject_and_adds_one_row_per_run() {
    let seed = SeedSpec {
        seed: 11,
        campaigns: 6,
        templates: 1,
        users: 1,
        channels: 1,
    };
    let subjects: Vec<String> = World::seeded(&seed)
        .campaigns
        .iter()
        .map(|c| c.subject.clone())
        .collect();
    let sandbox = Sandbox::start(
        SandboxConfig {
            seed,
            ..SandboxConfig::default()
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("sandbox");
    let (url, db) = migrated_database().await;
    for (id, subject, active) in [
        ("cmp-a", "anything", true),
        ("cmp-b", subjects[2].to_uppercase().as_str(), true),
        ("cmp-c", "no such subject", true),
        ("cmp-d", "x", true),
        ("cmp-e", "y", false),
    ] {
        sqlx::query("INSERT INTO campaigns (id, name, subject, active) VALUES ($1, $1, $2, $3)")
            .bind(id)
            .bind(subject)
            .bind(active)
            .execute(&db)
            .await
            .expect("campaign");
    }
    for (campaign, mailjet) in [("cmp-a", "7000001"), ("cmp-d", "999"), ("cmp-e", "7000004")] {
        sqlx::query("INSERT INTO mcp_integrations (service, external_id, internal_id) VALUES ('mailjet', $1, $2)").bind(mailjet).bind(campaign).execute(&db).await.expect("mapping");
    }
    let mut env = test_env(&url);
    env.insert("MAILJET_MCP_URL".into(), sandbox.base_url());
    env.insert(
        "MAILJET_MCP_TOKEN".into(),
        "sandbox-mcp-signing-secret".into(),
    );
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    for run in 1..=2 {
        queue
            .enqueue(
                "sync_mailjet_stats",
                Value::Null,
                EnqueueOptions {
                    trigger: Some("manual".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("enqueue");
        eventually(Duration::from_secs(20), "the run to finish", || async { count(&db, "SELECT count(*) FROM sync_runs WHERE job = 'sync_mailjet_stats' AND status = 'succeeded'").await == run }).await;
    }
    worker.stop().await;
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT campaign_id, count(*) FROM email_statistics GROUP BY campaign_id ORDER BY campaign_id").fetch_all(&db).await.expect("rows");
    assert_eq!(
        rows,
        [("cmp-a".to_owned(), 2), ("cmp-b".to_owned(), 2)],
        "one snapshot per mapped active campaign per run"
    );
    let matched: (String, String) = sqlx::query_as(
        "SELECT external_id, matched_by FROM mcp_integrations WHERE internal_id = 'cmp-b'",
    )
    .fetch_one(&db)
    .await
    .expect("mapping");
    assert_eq!(
        matched,
        ("7000002".to_owned(), "subject".to_owned()),
        "matched by subject, ignoring case"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM mcp_integrations").await,
        4,
        "the second run mapped nothing new"
    );
    let (synced, failed, counts): (i32, i32, Value) = sqlx::query_as("SELECT items_synced, items_failed, counts FROM sync_runs WHERE job = 'sync_mailjet_stats' ORDER BY started_at LIMIT 1").fetch_one(&db).await.expect("run");
    assert_eq!((synced, failed), (2, 0));
    assert_eq!(counts["matched_by_subject"], 1);
    assert_eq!(counts["not_found_in_mailjet"], 1);
    let snapshot: (i64, i64, f64, f64) = sqlx::query_as("SELECT delivered, opened, open_rate, engagement_score FROM email_statistics WHERE campaign_id = 'cmp-a' LIMIT 1").fetch_one(&db).await.expect("snapshot");
    assert!(
        snapshot.0 > 0 && (snapshot.2 - snapshot.1 as f64 / snapshot.0 as f64).abs() < 1e-9,
        "{snapshot:?}"
    );
    assert!((0.0..=100.0).contains(&snapshot.3));
    let last_synced: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_synced FROM mcp_integrations WHERE internal_id = 'cmp-a'")
            .fetch_one(&db)
            .await
            .expect("synced");
    assert!(last_synced.is_some());
}
