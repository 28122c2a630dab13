//! The scheduled syncs against the sandbox.

use std::net::SocketAddr;
use std::time::Duration;

use campaign_sync::queue::{EnqueueOptions, Queue};
use campaign_sync::sandbox::data::World;
use campaign_sync::sandbox::{Sandbox, SandboxConfig, SeedSpec};
use serde_json::Value;
use sqlx::PgPool;

use crate::clients::control;
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

/// A sandbox with `seed`, the environment of a worker pointed at it, and its database.
async fn slack_setup(
    seed: SeedSpec,
    adjust: impl FnOnce(&mut SandboxConfig),
) -> (Sandbox, std::collections::HashMap<String, String>, PgPool) {
    let mut config = SandboxConfig {
        seed,
        slack_tiers_per_minute: [100, 6_000, 6_000, 6_000],
        ..SandboxConfig::default()
    };
    adjust(&mut config);
    let bot = config.slack_bot_token.clone();
    let sandbox = Sandbox::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sandbox");
    let (url, db) = migrated_database().await;
    let mut env = test_env(&url);
    env.insert("SLACK_API_URL".into(), sandbox.slack_api_url());
    env.insert("SLACK_BOT_TOKEN".into(), bot);
    env.insert("SLACK_TIER2_PER_MIN".into(), "6000".into());
    env.insert("SLACK_TIER3_PER_MIN".into(), "6000".into());
    env.insert("MAILJET_MCP_URL".into(), sandbox.base_url());
    env.insert(
        "MAILJET_MCP_TOKEN".into(),
        "sandbox-mcp-signing-secret".into(),
    );
    (sandbox, env, db)
}

/// Enqueues `job` by hand and waits until `succeeded` runs of it have succeeded.
async fn run_once(
    env: &std::collections::HashMap<String, String>,
    db: &PgPool,
    job: &str,
    succeeded: i64,
) {
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    queue
        .enqueue(
            job,
            Value::Null,
            EnqueueOptions {
                trigger: Some("manual".into()),
                ..Default::default()
            },
        )
        .await
        .expect("enqueue");
    wait_succeeded(db, job, succeeded, Duration::from_secs(60)).await;
}

async fn wait_succeeded(db: &PgPool, job: &str, n: i64, limit: Duration) {
    eventually(limit, &format!("{n} succeeded run(s) of {job}"), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sync_runs WHERE job = $1 AND status = 'succeeded'",
        )
        .bind(job)
        .fetch_one(db)
        .await
        .expect("count")
            >= n
    })
    .await;
}

async fn last_counts(db: &PgPool, job: &str) -> (i32, i32, Value) {
    sqlx::query_as("SELECT items_synced, items_failed, counts FROM sync_runs WHERE job = $1 AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1")
        .bind(job)
        .fetch_one(db)
        .await
        .expect("run")
}

type IntegrationRow = (
    String,
    Option<String>,
    bool,
    String,
    chrono::DateTime<chrono::Utc>,
);

async fn integrations(db: &PgPool) -> Vec<IntegrationRow> {
    sqlx::query_as("SELECT slack_user_id, team_member_id, is_active, slack_username, updated_at FROM slack_integrations ORDER BY slack_user_id")
        .fetch_all(db)
        .await
        .expect("integrations")
}

#[tokio::test]
async fn sync_slack_users_pages_to_the_end_matches_by_email_and_a_second_run_changes_nothing() {
    let seed = SeedSpec {
        seed: 5,
        campaigns: 1,
        templates: 1,
        users: 437,
        channels: 1,
    };
    let world = World::seeded(&seed);
    let (sandbox, mut env, db) = slack_setup(seed, |c| c.slack_short_pages = true).await;
    env.insert("SLACK_PAGE_SIZE".into(), "50".into());
    env.insert("SLACK_SYNC_PRESENCE".into(), "true".into());
    // Team members for every 10th user, with the email in another case; one with no user.
    let mut expected_links = Vec::new();
    for user in world.workspace.users.iter().step_by(10) {
        if user.is_bot || user.email.is_empty() {
            continue;
        }
        sqlx::query("INSERT INTO team_members (id, email, name) VALUES ($1, $2, $1)")
            .bind(format!("tm-{}", user.id))
            .bind(user.email.to_uppercase())
            .execute(&db)
            .await
            .expect("member");
        expected_links.push((user.id.clone(), format!("tm-{}", user.id)));
    }
    sqlx::query("INSERT INTO team_members (id, email) VALUES ('tm-nobody', 'nobody@example.org')")
        .execute(&db)
        .await
        .expect("member");
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "sync_slack_users", 1).await;
    let first = integrations(&db).await;
    run_once(&env, &db, "sync_slack_users", 2).await;
    worker.stop().await;

    let humans: Vec<_> = world.workspace.users.iter().filter(|u| !u.is_bot).collect();
    assert_eq!(
        first.len(),
        humans.len(),
        "every human, no bot, pages to the end"
    );
    for (row, user) in first.iter().zip(&humans) {
        assert_eq!(row.0, user.id);
        assert_eq!(
            row.2, !user.deleted,
            "deleted users are inactive: {}",
            user.id
        );
    }
    let mut links: Vec<(String, String)> = first
        .iter()
        .filter_map(|r| r.1.clone().map(|m| (r.0.clone(), m)))
        .collect();
    links.sort();
    expected_links.sort();
    assert_eq!(links, expected_links, "matched by email, ignoring case");
    let second = integrations(&db).await;
    assert_eq!(
        first, second,
        "a second run changes nothing (updated_at included)"
    );

    let (synced, failed, counts) = last_counts(&db, "sync_slack_users").await;
    assert_eq!(synced as usize, humans.len());
    assert_eq!(failed, 0);
    assert_eq!(
        counts["bots_skipped"],
        world.workspace.users.len() - humans.len()
    );
    assert_eq!(counts["linked"], 0, "links were made by the first run");
    assert!(counts["pages"].as_u64().expect("pages") >= 9, "{counts}");
    let linked_audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'team_member.slack_linked'",
    )
    .fetch_one(&db)
    .await
    .expect("audit");
    assert_eq!(
        linked_audit as usize,
        expected_links.len(),
        "one audit entry per link, none on the second run"
    );
    let runs_audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'sync_run.succeeded'")
            .fetch_one(&db)
            .await
            .expect("audit");
    assert_eq!(runs_audited, 2);
    let with_presence: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM slack_integrations WHERE availability IS NOT NULL",
    )
    .fetch_one(&db)
    .await
    .expect("presence");
    let active_links = expected_links
        .iter()
        .filter(|(id, _)| humans.iter().any(|u| &u.id == id && !u.deleted))
        .count();
    assert_eq!(
        with_presence as usize, active_links,
        "availability of active matched users only"
    );
    drop(sandbox);
}

/// A users sync under way over `users` Slack users, `page_size` a page, each page
/// `latency_ms` slow so that the run can be broken off part-way.
struct SlowUsersSync {
    seed: SeedSpec,
    sandbox: Sandbox,
    env: std::collections::HashMap<String, String>,
    db: PgPool,
    worker: TestWorker,
    queue: Queue,
}

async fn slow_users_sync(
    seed: u64,
    users: usize,
    page_size: u32,
    latency_ms: u64,
) -> SlowUsersSync {
    let seed = SeedSpec {
        seed,
        campaigns: 1,
        templates: 1,
        users,
        channels: 1,
    };
    let (sandbox, mut env, db) = slack_setup(seed.clone(), |_| {}).await;
    env.insert("SLACK_PAGE_SIZE".into(), page_size.to_string());
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(serde_json::json!({ "endpoint": "slack.users.list", "latency_ms": latency_ms })),
    )
    .await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    let queue = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "default");
    queue
        .enqueue("sync_slack_users", Value::Null, EnqueueOptions::default())
        .await
        .expect("enqueue");
    SlowUsersSync {
        seed,
        sandbox,
        env,
        db,
        worker,
        queue,
    }
}

#[tokio::test]
async fn sync_slack_users_resumes_an_interrupted_pass_from_its_saved_cursor() {
    let SlowUsersSync {
        seed,
        sandbox,
        env: _,
        db,
        worker,
        queue,
    } = slow_users_sync(6, 600, 50, 150).await;
    eventually(
        Duration::from_secs(30),
        "a few pages to be saved",
        || async { count(&db, "SELECT count(*) FROM slack_integrations").await >= 150 },
    )
    .await;
    // Slack starts failing: retries run out and the run fails, keeping its cursor.
    control(&sandbox, reqwest::Method::POST, "/_sandbox/faults", Some(serde_json::json!({ "endpoint": "slack.users.list", "error_rate": 1.0, "error_status": 503 }))).await;
    eventually(Duration::from_secs(40), "the run to fail", || async {
        count(&db, "SELECT count(*) FROM sync_runs WHERE job = 'sync_slack_users' AND status = 'failed' AND cursor IS NOT NULL").await == 1
    })
    .await;
    let saved_before = count(&db, "SELECT count(*) FROM slack_integrations").await;
    assert!(
        saved_before < 550,
        "interrupted part-way ({saved_before} saved)"
    );
    let calls_before = crate::clients::count(&sandbox, "slack.users.list").await;
    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/faults", None).await;
    // The queue's own retry (or this manual run, whichever comes first) goes on from there.
    queue
        .enqueue("sync_slack_users", Value::Null, EnqueueOptions::default())
        .await
        .expect("enqueue");
    wait_succeeded(&db, "sync_slack_users", 1, Duration::from_secs(60)).await;
    worker.stop().await;
    let (synced, _, counts) = sqlx::query_as::<_, (i32, i32, Value)>("SELECT items_synced, items_failed, counts FROM sync_runs WHERE job = 'sync_slack_users' AND status = 'succeeded' ORDER BY started_at LIMIT 1").fetch_one(&db).await.expect("run");
    assert_eq!(counts["resumed"], true, "{counts}");
    let total_pages = 600_u64.div_ceil(50) as i64;
    let pages = counts["pages"].as_i64().expect("pages");
    assert!(
        pages < total_pages,
        "went on from the cursor: {pages} of {total_pages} pages"
    );
    assert!(
        synced > 0 && (synced as i64) <= pages * 50,
        "{synced} users in {pages} pages"
    );
    let calls_after = crate::clients::count(&sandbox, "slack.users.list").await;
    assert!(
        calls_after - calls_before <= (pages as u64) + 1,
        "no page fetched twice: {calls_before} → {calls_after}"
    );
    let world = World::seeded(&seed);
    let humans = world.workspace.users.iter().filter(|u| !u.is_bot);
    let deleted = humans.clone().filter(|u| u.deleted).count() as i64;
    assert_eq!(
        count(&db, "SELECT count(*) FROM slack_integrations").await,
        humans.count() as i64,
        "every human user stored once"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM slack_integrations WHERE NOT is_active"
        )
        .await,
        deleted,
        "the deleted users, and nobody marked gone by the resumed pass"
    );
}

#[tokio::test]
async fn update_slack_channels_maps_by_name_keeps_the_mapping_across_a_rename_and_archives_deleted()
{
    let seed = SeedSpec {
        seed: 8,
        campaigns: 1,
        templates: 1,
        users: 20,
        channels: 30,
    };
    let (sandbox, mut env, db) = slack_setup(seed, |_| {}).await;
    env.insert("SLACK_PAGE_SIZE".into(), "7".into());
    // Channels campaign-1 … campaign-15 exist; campaigns with slugs 2, 3 and 99 do too.
    for (id, slug) in [("cmp-2", "2"), ("cmp-3", "3"), ("cmp-99", "99")] {
        sqlx::query("INSERT INTO campaigns (id, name, slug) VALUES ($1, $1, $2)")
            .bind(id)
            .bind(slug)
            .execute(&db)
            .await
            .expect("campaign");
    }
    // A channel seen by an earlier sync that Slack no longer lists (deleted there).
    sqlx::query("INSERT INTO slack_channels (id, workspace_id, name, last_synced) VALUES ('C0GONE', 'default', 'old-news', now() - interval '1 day')")
        .execute(&db)
        .await
        .expect("stale channel");
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "update_slack_channels", 1).await;
    let gone: bool =
        sqlx::query_scalar("SELECT is_archived FROM slack_channels WHERE id = 'C0GONE'")
            .fetch_one(&db)
            .await
            .expect("gone");
    assert!(gone, "a channel gone from Slack is marked archived");
    sqlx::query("DELETE FROM slack_channels WHERE id = 'C0GONE'")
        .execute(&db)
        .await
        .expect("delete");
    let mapped: Vec<(String, String, String)> = sqlx::query_as("SELECT id, name, campaign_id FROM slack_channels WHERE campaign_id IS NOT NULL ORDER BY campaign_id")
        .fetch_all(&db)
        .await
        .expect("mapped");
    assert_eq!(
        mapped
            .iter()
            .map(|m| (m.1.as_str(), m.2.as_str()))
            .collect::<Vec<_>>(),
        [("campaign-2", "cmp-2"), ("campaign-3", "cmp-3")]
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM slack_channels").await,
        30,
        "every channel, 7 a page"
    );
    let before: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM slack_channels ORDER BY id")
            .fetch_all(&db)
            .await
            .expect("rows");

    // Rename campaign-2, and create a new channel with the old name: the mapping stays with
    // the channel id, and the newcomer does not take the campaign.
    let bot = "sandbox-bot-token";
    let slack = |method: &'static str, form: Vec<(&'static str, String)>| {
        let url = format!("{}/{method}", sandbox.slack_api_url());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(bot)
                .form(&form)
                .send()
                .await
                .expect("slack")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let renamed = slack(
        "conversations.rename",
        vec![
            ("channel", mapped[0].0.clone()),
            ("name", "spring-launch".into()),
        ],
    )
    .await;
    assert_eq!(renamed["ok"], true, "{renamed}");
    let created = slack("conversations.create", vec![("name", "campaign-2".into())]).await;
    assert_eq!(created["ok"], true, "{created}");
    run_once(&env, &db, "update_slack_channels", 2).await;
    worker.stop().await;
    let (name, campaign): (String, Option<String>) =
        sqlx::query_as("SELECT name, campaign_id FROM slack_channels WHERE id = $1")
            .bind(&mapped[0].0)
            .fetch_one(&db)
            .await
            .expect("renamed");
    assert_eq!(
        (name.as_str(), campaign.as_deref()),
        ("spring-launch", Some("cmp-2"))
    );
    let newcomer: Option<String> =
        sqlx::query_scalar("SELECT campaign_id FROM slack_channels WHERE name = 'campaign-2'")
            .fetch_one(&db)
            .await
            .expect("newcomer");
    assert_eq!(newcomer, None, "cmp-2 already has its channel");
    let after: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM slack_channels WHERE id = ANY($1) ORDER BY id")
            .bind(before.iter().map(|b| b.0.clone()).collect::<Vec<_>>())
            .fetch_all(&db)
            .await
            .expect("rows");
    let changed: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| &b.0)
        .collect();
    assert_eq!(changed, [&mapped[0].0], "only the renamed channel changed");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'campaign.channel_mapped'",
    )
    .fetch_one(&db)
    .await
    .expect("audit");
    assert_eq!(audited, 2);
    let (_, _, counts) = last_counts(&db, "update_slack_channels").await;
    assert_eq!(counts["newly_mapped"], 0, "{counts}");
    assert_eq!(counts["mapped"], 2, "{counts}");
}

#[tokio::test]
async fn slack_syncs_ride_out_a_429_storm_without_losing_a_page() {
    let seed = SeedSpec {
        seed: 9,
        campaigns: 1,
        templates: 1,
        users: 300,
        channels: 1,
    };
    let (sandbox, mut env, db) = slack_setup(seed.clone(), |_| {}).await;
    env.insert("SLACK_PAGE_SIZE".into(), "40".into());
    control(&sandbox, reqwest::Method::POST, "/_sandbox/faults", Some(serde_json::json!({ "endpoint": "slack.users.list", "rate_limit_for_secs": 3, "retry_after_secs": 1 }))).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "sync_slack_users", 1).await;
    worker.stop().await;
    let stats = control(&sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await;
    assert!(
        stats["endpoints"]["slack.users.list"]["rate_limited"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "the storm was felt: {stats}"
    );
    let humans = World::seeded(&seed)
        .workspace
        .users
        .iter()
        .filter(|u| !u.is_bot)
        .count();
    assert_eq!(
        count(&db, "SELECT count(*) FROM slack_integrations").await as usize,
        humans
    );
}

#[tokio::test]
async fn sync_mailjet_templates_imports_variables_through_either_adapter_and_isolates_failures() {
    let seed = SeedSpec {
        seed: 12,
        campaigns: 1,
        templates: 130,
        users: 1,
        channels: 1,
    };
    let (sandbox, env, db) = slack_setup(seed.clone(), |_| {}).await;
    // The agent, with every content look-up failing: each is counted, the run still ends.
    control(&sandbox, reqwest::Method::POST, "/_sandbox/faults", Some(serde_json::json!({ "endpoint": "mailjet.agent.templates.get", "error_rate": 1.0, "error_status": 400 }))).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "sync_mailjet_templates", 1).await;
    let (synced, failed, _) = last_counts(&db, "sync_mailjet_templates").await;
    assert_eq!((synced, failed), (0, 130));
    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/faults", None).await;
    run_once(&env, &db, "sync_mailjet_templates", 2).await;
    worker.stop().await;
    let (synced, failed, counts) = last_counts(&db, "sync_mailjet_templates").await;
    assert_eq!(
        (synced, failed),
        (130, 0),
        "two pages of the list, every template"
    );
    assert_eq!(counts["created"], 130);
    let world = World::seeded(&seed);
    let first = world.templates.values().next().expect("a template");
    let (name, category, variables, defaults): (String, Option<String>, Vec<String>, Value) = sqlx::query_as("SELECT name, category, variables, variable_defaults FROM email_templates WHERE id = $1")
        .bind(first.id)
        .fetch_one(&db)
        .await
        .expect("template");
    assert_eq!(name, first.name);
    assert_eq!(
        category.as_deref(),
        first.categories.first().map(String::as_str)
    );
    assert_eq!(
        variables,
        ["body", "cta_url", "first_name", "headline", "subject"]
    );
    assert!(
        defaults["headline"].is_string()
            && defaults["subject"].is_string()
            && defaults["body"].is_string()
            && defaults.get("first_name").is_none(),
        "{defaults}"
    );
    let snapshot: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM email_templates ORDER BY id")
            .fetch_all(&db)
            .await
            .expect("rows");

    // The REST adapter reads the same templates: nothing changes.
    let mut rest = env.clone();
    rest.insert("MAILJET_ADAPTER".into(), "rest".into());
    rest.insert("MAILJET_API_URL".into(), sandbox.base_url());
    rest.insert("MAILJET_API_KEY".into(), "sandbox-key".into());
    rest.insert("MAILJET_API_SECRET".into(), "sandbox-secret".into());
    let worker = TestWorker::start(worker_settings(&rest), campaign_sync::jobs::builtin());
    run_once(&rest, &db, "sync_mailjet_templates", 3).await;
    worker.stop().await;
    let (synced, _, counts) = last_counts(&db, "sync_mailjet_templates").await;
    assert_eq!(synced, 130);
    assert_eq!(counts["unchanged"], 130, "{counts}");
    let again: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM email_templates ORDER BY id")
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(snapshot, again);
}

#[tokio::test]
async fn sync_mailjet_stats_counts_a_bad_campaign_against_itself_and_rides_out_a_429_storm() {
    let seed = SeedSpec {
        seed: 13,
        campaigns: 30,
        templates: 1,
        users: 1,
        channels: 1,
    };
    let (sandbox, env, db) = slack_setup(seed, |_| {}).await;
    for i in 0..30 {
        let id = format!("c{i:02}");
        sqlx::query("INSERT INTO campaigns (id, name) VALUES ($1, $1)")
            .bind(&id)
            .execute(&db)
            .await
            .expect("campaign");
        // c07 is mapped to something that is not a Mailjet id.
        let external = if i == 7 {
            "not-a-number".to_owned()
        } else {
            (7_000_000 + i).to_string()
        };
        sqlx::query("INSERT INTO mcp_integrations (service, external_id, internal_id) VALUES ('mailjet', $1, $2)")
            .bind(external)
            .bind(&id)
            .execute(&db)
            .await
            .expect("mapping");
    }
    control(&sandbox, reqwest::Method::POST, "/_sandbox/faults", Some(serde_json::json!({ "endpoint": "mailjet.agent.campaigns.statistics", "rate_limit_for_secs": 2, "retry_after_secs": 1 }))).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "sync_mailjet_stats", 1).await;
    worker.stop().await;
    let (synced, failed, counts) = last_counts(&db, "sync_mailjet_stats").await;
    assert_eq!((synced, failed), (29, 1), "{counts}");
    assert!(
        counts["errors"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("c07:"),
        "{counts}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT campaign_id) FROM email_statistics"
        )
        .await,
        29
    );
    let stats = control(&sandbox, reqwest::Method::GET, "/_sandbox/requests", None).await;
    assert!(
        stats["endpoints"]["mailjet.agent.campaigns.statistics"]["rate_limited"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the storm was felt: {stats}"
    );
}

#[tokio::test]
async fn a_stopping_worker_ends_a_slack_sync_at_a_saved_page_and_the_next_run_resumes() {
    let SlowUsersSync {
        seed,
        sandbox,
        env,
        db,
        worker,
        queue: _,
    } = slow_users_sync(21, 500, 25, 200).await;
    eventually(Duration::from_secs(30), "a few pages", || async {
        count(&db, "SELECT count(*) FROM slack_integrations").await >= 75
    })
    .await;
    let started = std::time::Instant::now();
    worker.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped at the next page, not after the grace period ({:?})",
        started.elapsed()
    );
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM sync_runs WHERE job = 'sync_slack_users'")
            .fetch_one(&db)
            .await
            .expect("run");
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("stopping"));
    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/faults", None).await;
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    run_once(&env, &db, "sync_slack_users", 1).await;
    worker.stop().await;
    let (_, _, counts) = last_counts(&db, "sync_slack_users").await;
    assert_eq!(counts["resumed"], true, "{counts}");
    let humans = World::seeded(&seed)
        .workspace
        .users
        .iter()
        .filter(|u| !u.is_bot)
        .count();
    assert_eq!(
        count(&db, "SELECT count(*) FROM slack_integrations").await as usize,
        humans
    );
}

#[tokio::test]
async fn a_slack_event_and_the_users_sync_keep_one_row_per_user() {
    let seed = SeedSpec {
        seed: 22,
        campaigns: 1,
        templates: 1,
        users: 10,
        channels: 1,
    };
    let world = World::seeded(&seed);
    let user = &world.workspace.users[0];
    let (_sandbox, env, db) = slack_setup(seed, |_| {}).await;
    // A user_change event as the receiver stores it: Slack's envelope names its team id.
    let envelope = serde_json::json!({
        "type": "event_callback", "team_id": "T0SANDBOX1", "event_id": "Ev1",
        "event": { "type": "user_change", "user": { "id": user.id, "name": user.name, "profile": { "email": user.email } } },
    });
    let id: i64 = sqlx::query_scalar("INSERT INTO webhook_events (source, external_id, event_type, payload) VALUES ('slack_events', 'Ev1', 'user_change', $1) RETURNING id")
        .bind(&envelope)
        .fetch_one(&db)
        .await
        .expect("event");
    let worker = TestWorker::start(worker_settings(&env), campaign_sync::jobs::builtin());
    let webhooks = Queue::new(redis_conn().await, &env["REDIS_KEY_PREFIX"], "webhooks");
    webhooks
        .enqueue(
            "process_webhook_events",
            serde_json::json!({ "ids": [id] }),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    eventually(Duration::from_secs(20), "the event processed", || async {
        count(
            &db,
            "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
        )
        .await
            == 1
    })
    .await;
    run_once(&env, &db, "sync_slack_users", 1).await;
    worker.stop().await;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT workspace_id FROM slack_integrations WHERE slack_user_id = $1")
            .bind(&user.id)
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(
        rows,
        ["default"],
        "one row, keyed by the deployment's workspace"
    );
}
