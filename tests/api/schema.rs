//! The migrations and the invariants the schema enforces.

use campaign_sync::store::{self, MIGRATOR};
use sqlx::PgPool;

use crate::helpers::{create_database, migrated_database};

const TABLES: &[&str] = &[
    "campaigns",
    "team_members",
    "mcp_integrations",
    "email_statistics",
    "email_templates",
    "email_requests",
    "email_sends",
    "email_suppressions",
    "email_events",
    "slack_integrations",
    "slack_channels",
    "notifications",
    "approvals",
    "webhook_events",
    "sync_runs",
    "oauth_tokens",
    "audit_log",
    "metric_rollups",
];

async fn table_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
    )
    .bind(TABLES)
    .fetch_one(pool)
    .await
    .expect("count tables")
}

#[tokio::test]
async fn two_migrations_racing_on_one_database_apply_each_migration_once() {
    let (url, _) = create_database().await;
    let a = PgPool::connect(&url).await.expect("pool a");
    let b = PgPool::connect(&url).await.expect("pool b");
    let (ra, rb) = tokio::join!(MIGRATOR.run(&a), MIGRATOR.run(&b));
    ra.expect("first migrate");
    rb.expect("second migrate");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&a)
        .await
        .expect("count");
    assert_eq!(
        rows as usize,
        MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count()
    );
    assert_eq!(table_count(&a).await, TABLES.len() as i64);
    MIGRATOR.run(&a).await.expect("a third run changes nothing");
}

#[tokio::test]
async fn migrations_revert_cleanly_and_apply_again() {
    let (_, pool) = migrated_database().await;
    MIGRATOR.undo(&pool, 0).await.expect("revert all");
    assert_eq!(table_count(&pool).await, 0);
    let (states, _) = store::migration_status(&pool).await.expect("status");
    assert!(states.iter().all(|m| !m.applied));
    MIGRATOR.run(&pool).await.expect("apply again");
    assert_eq!(table_count(&pool).await, TABLES.len() as i64);
    let (states, unknown) = store::migration_status(&pool).await.expect("status");
    assert!(states.iter().all(|m| m.applied && m.problem.is_none()));
    assert!(unknown.is_empty());
}

async fn campaign(pool: &PgPool, id: &str) {
    sqlx::query("INSERT INTO campaigns (id, name, subject) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(format!("Campaign {id}"))
        .bind(format!("Subject {id}"))
        .execute(pool)
        .await
        .expect("insert campaign");
}

fn is_unique_violation(err: sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[tokio::test]
async fn an_external_campaign_maps_to_one_internal_campaign() {
    let (_, pool) = migrated_database().await;
    campaign(&pool, "c1").await;
    campaign(&pool, "c2").await;
    let map = |internal: &'static str, external: &'static str| {
        sqlx::query("INSERT INTO mcp_integrations (service, external_id, internal_id) VALUES ('mailjet', $1, $2)")
            .bind(external)
            .bind(internal)
    };
    map("c1", "7001")
        .execute(&pool)
        .await
        .expect("first mapping");
    let err = map("c2", "7001")
        .execute(&pool)
        .await
        .expect_err("same Mailjet campaign twice");
    assert!(is_unique_violation(err));
    let err = map("c1", "7002")
        .execute(&pool)
        .await
        .expect_err("two Mailjet campaigns for c1");
    assert!(is_unique_violation(err));
}

#[tokio::test]
async fn a_recipient_appears_once_per_request_whatever_the_case_of_the_address() {
    let (_, pool) = migrated_database().await;
    campaign(&pool, "c1").await;
    let request: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count) VALUES ('k1', 'h', 'c1', 1, 2) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("request");
    let send = |email: &'static str| {
        sqlx::query("INSERT INTO email_sends (request_id, email) VALUES ($1, $2)")
            .bind(request)
            .bind(email)
    };
    send("Ann@Example.com").execute(&pool).await.expect("first");
    assert!(is_unique_violation(
        send("ann@example.com")
            .execute(&pool)
            .await
            .expect_err("duplicate")
    ));
    let err = sqlx::query("INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count) VALUES ('k1', 'h2', 'c1', 1, 1)")
        .execute(&pool)
        .await
        .expect_err("idempotency key reused");
    assert!(is_unique_violation(err));
}

#[tokio::test]
async fn a_webhook_event_is_stored_once_per_source_and_identity() {
    let (_, pool) = migrated_database().await;
    let insert = || {
        sqlx::query(
            "INSERT INTO webhook_events (source, external_id, event_type) VALUES ('slack_events', 'Ev123', 'user_change') ON CONFLICT DO NOTHING",
        )
    };
    assert_eq!(
        insert()
            .execute(&pool)
            .await
            .expect("first")
            .rows_affected(),
        1
    );
    assert_eq!(
        insert()
            .execute(&pool)
            .await
            .expect("replay")
            .rows_affected(),
        0
    );
}

#[tokio::test]
async fn a_job_has_at_most_one_running_sync_run_and_each_tick_is_recorded_once() {
    let (_, pool) = migrated_database().await;
    let start = |tick: &'static str| {
        sqlx::query("INSERT INTO sync_runs (job, trigger, scheduled_for) VALUES ('sync_slack_users', 'schedule', $1::timestamptz)").bind(tick)
    };
    start("2026-01-01T00:00:00Z")
        .execute(&pool)
        .await
        .expect("first run");
    assert!(is_unique_violation(
        start("2026-01-01T01:00:00Z")
            .execute(&pool)
            .await
            .expect_err("overlap")
    ));
    sqlx::query("UPDATE sync_runs SET status = 'succeeded', finished_at = now()")
        .execute(&pool)
        .await
        .expect("finish");
    start("2026-01-01T01:00:00Z")
        .execute(&pool)
        .await
        .expect("next tick runs");
    sqlx::query(
        "UPDATE sync_runs SET status = 'succeeded', finished_at = now() WHERE status = 'running'",
    )
    .execute(&pool)
    .await
    .expect("finish");
    assert!(is_unique_violation(
        start("2026-01-01T01:00:00Z")
            .execute(&pool)
            .await
            .expect_err("same tick twice")
    ));
    let err = sqlx::query("UPDATE sync_runs SET finished_at = NULL")
        .execute(&pool)
        .await
        .expect_err("finished run without finish time");
    assert!(matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23514")));
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let (_, pool) = migrated_database().await;
    sqlx::query("INSERT INTO audit_log (actor, action, entity_type, entity_id) VALUES ('test', 'create', 'campaign', 'c1')")
        .execute(&pool)
        .await
        .expect("append");
    for statement in [
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(statement)
            .execute(&pool)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn invalid_rows_are_refused_by_check_constraints() {
    let (_, pool) = migrated_database().await;
    for statement in [
        "INSERT INTO campaigns (id, name) VALUES ('has space', 'x')",
        "INSERT INTO campaigns (id, name, status) VALUES ('c9', 'x', 'exploded')",
        "INSERT INTO team_members (id, email) VALUES ('t1', 'not-an-address')",
        "INSERT INTO email_suppressions (email, reason) VALUES ('Upper@Example.com', 'spam')",
    ] {
        let err = sqlx::query(statement)
            .execute(&pool)
            .await
            .expect_err(statement);
        assert!(
            matches!(err, sqlx::Error::Database(ref db) if db.code().as_deref() == Some("23514")),
            "{statement}: {err}"
        );
    }
}
