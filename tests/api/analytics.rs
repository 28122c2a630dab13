//! Analytics: rollups that count each thing once, in the period it happened, with trends;
//! reruns and backfills that write the same rows; a late event that updates the periods it
//! belongs to; the API, `rollup` and `report` as separate processes; templates; team activity
//! from Slack `message` events delivered by the sandbox (stored without their text).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use campaign_sync::jobs::rollup_metrics::Plan;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{eventually, migrated_database, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Campaign c1 sends through Mailjet campaigns (cumulative snapshots); c2 through the
/// service (4 sends of template 77 with their events); c1's channel has a thread and an
/// approval decided in 2 h.
async fn fixtures(db: &PgPool) {
    exec(db, "
        INSERT INTO campaigns (id, name, status) VALUES ('c1', 'Spring', 'active'), ('c2', 'Summer', 'active'), ('c3', 'Quiet', 'active');
        INSERT INTO email_templates (id, name, category, variables, variable_defaults)
            VALUES (77, 'Welcome', 'onboarding', '{first_name,cta}', '{\"cta\": \"Go\"}'), (78, 'Digest', 'newsletter', '{}', '{}');
        INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, spam, unsubscribed, recorded_at) VALUES
            ('c1', 500, 100,  90,  30,  5, 1, 0, 0, '2026-11-02T10:00:00Z'),
            ('c1', 500, 200, 180,  60, 10, 2, 0, 1, '2026-11-02T20:00:00Z'),
            ('c1', 500, 260, 240, 100, 20, 3, 0, 1, '2026-11-03T09:00:00Z'),
            ('c1', 500, 300, 280, 120, 30, 3, 0, 2, '2026-11-10T09:00:00Z');
        INSERT INTO email_requests (id, idempotency_key, request_hash, campaign_id, template_id, recipient_count, status)
            VALUES ('00000000-0000-0000-0000-00000000000a', 'k1', 'h', 'c2', 77, 4, 'completed');
        INSERT INTO email_sends (id, request_id, email, status, sent_at, delivered_at, first_opened_at, first_clicked_at) VALUES
            ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', 'a@example.com', 'sent', '2026-11-03T12:00:00Z', '2026-11-03T12:01:00Z', '2026-11-03T13:00:00Z', NULL),
            ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', 'b@example.com', 'sent', '2026-11-03T12:00:00Z', '2026-11-03T12:01:00Z', '2026-11-03T14:00:00Z', '2026-11-06T09:00:00Z'),
            ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', 'c@example.com', 'sent', '2026-11-03T12:00:00Z', '2026-11-03T12:01:00Z', '2026-11-05T08:00:00Z', NULL),
            ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000a', 'd@example.com', 'sent', '2026-11-03T12:00:00Z', '2026-11-03T12:01:00Z', NULL, NULL);
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'sent', delivered_at FROM email_sends;
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'open', first_opened_at FROM email_sends WHERE first_opened_at IS NOT NULL;
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'open', '2026-11-07T10:00:00Z' FROM email_sends WHERE email = 'a@example.com';
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'click', first_clicked_at FROM email_sends WHERE first_clicked_at IS NOT NULL;
        INSERT INTO campaign_revenue (campaign_id, day, amount) VALUES ('c2', '2026-11-03', 120.50);
        INSERT INTO team_members (id, email, name) VALUES ('tm-1', 'ada@example.com', 'Ada'), ('tm-2', 'bo@example.com', 'Bo');
        INSERT INTO slack_integrations (team_member_id, workspace_id, slack_user_id, slack_username, real_name)
            VALUES ('tm-1', 'T1', 'U1', 'ada', 'Ada Lovelace'), ('tm-2', 'T1', 'U2', 'bo', 'Bo Diddley');
        INSERT INTO slack_channels (id, workspace_id, name, campaign_id) VALUES ('C1', 'T1', 'campaign-spring', 'c1'), ('C3', 'T1', 'campaign-quiet', 'c3'), ('C9', 'T1', 'random', NULL);
        INSERT INTO slack_messages (channel_id, ts, user_id, thread_ts, posted_at) VALUES
            ('C1', '1762077600.000100', 'U1', NULL, '2026-11-02T10:00:00Z'),
            ('C1', '1762077660.000100', 'U1', '1762077600.000100', '2026-11-02T10:01:00Z'),
            ('C1', '1762077720.000100', 'U1', NULL, '2026-11-02T10:02:00Z'),
            ('C1', '1762164000.000100', 'U2', '1762077600.000100', '2026-11-03T10:00:00Z'),
            ('C9', '1762164060.000100', 'U2', NULL, '2026-11-03T10:01:00Z');
        INSERT INTO approvals (id, campaign_id, stage, approver_id, deadline, status, decided_at, decided_by, created_at)
            VALUES ('apr-1', 'c1', 'copy', 'tm-2', '2026-11-09T00:00:00Z', 'approved', '2026-11-02T12:00:00Z', 'U2', '2026-11-02T10:00:00Z'),
                   ('apr-2', 'c1', 'final', 'tm-2', '2030-01-01T00:00:00Z', 'pending', NULL, NULL, now() - interval '5 hours');
    ").await;
}

/// Every rollup row, as the API would read it.
async fn rows(db: &PgPool) -> Vec<(String, String, i64, String, NaiveDate, Value, Value)> {
    sqlx::query_as(
        "SELECT scope, coalesce(campaign_id, ''), coalesce(template_id, 0), period, period_start, metrics, trends
         FROM metric_rollups ORDER BY 1, 2, 3, 4, 5",
    )
    .fetch_all(db)
    .await
    .expect("rows")
}

async fn metrics(db: &PgPool, scope: &str, subject: &str, period: &str, start: &str) -> Value {
    sqlx::query_scalar(
        "SELECT metrics || jsonb_build_object('trends', trends) FROM metric_rollups
         WHERE scope = $1 AND coalesce(campaign_id, coalesce(template_id::text, '')) = $2 AND period = $3 AND period_start = $4::date",
    )
    .bind(scope)
    .bind(subject)
    .bind(period)
    .bind(start)
    .fetch_optional(db)
    .await
    .expect("metrics")
    .unwrap_or(Value::Null)
}

fn counts(m: &Value) -> [i64; 4] {
    ["sent", "delivered", "opened", "clicked"].map(|k| m[k].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn rollups_count_each_thing_once_in_its_period_and_a_rerun_writes_the_same_rows() {
    let (_, db) = migrated_database().await;
    fixtures(&db).await;
    let plan = Plan::window(day("2026-11-01"), day("2026-11-30"));
    plan.run(&db, |_| {}).await.expect("rollup");

    // Mailjet's cumulative counters become per-day changes; weeks and months are their sums.
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "daily", "2026-11-02").await),
        [200, 180, 60, 10]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "daily", "2026-11-03").await),
        [60, 60, 40, 10]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "weekly", "2026-11-02").await),
        [260, 240, 100, 20]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "weekly", "2026-11-09").await),
        [40, 40, 20, 10]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "monthly", "2026-11-01").await),
        [300, 280, 120, 30]
    );
    // The service's sends: an open counted on the day of the first open only (the second open
    // of a@ on 11-07 counts nothing), a click three days after the send on its own day.
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "daily", "2026-11-03").await),
        [4, 4, 2, 0]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "daily", "2026-11-05").await),
        [0, 0, 1, 0]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "daily", "2026-11-06").await),
        [0, 0, 0, 1]
    );
    assert_eq!(
        metrics(&db, "email", "c2", "daily", "2026-11-07").await,
        Value::Null
    );
    let c2_week = metrics(&db, "email", "c2", "weekly", "2026-11-02").await;
    assert_eq!(counts(&c2_week), [4, 4, 3, 1]);
    assert_eq!(c2_week["revenue"], json!(120.5));
    assert_eq!(c2_week["openRate"], json!(0.75));
    // 100 × (0.4 × 0.75 + 0.6 × 0.25) = 45
    assert_eq!(c2_week["engagementScore"].as_f64(), Some(45.0));
    let total = metrics(&db, "email", "", "monthly", "2026-11-01").await;
    assert_eq!(counts(&total), [304, 284, 123, 31]);
    assert_eq!(total["campaigns"], json!(2));

    // Trends: the open rate went from 100/240 to 20/40 (+20 %), the click rate from 20/240 to
    // 10/40 (+200 %); the first week has nothing to compare with.
    let week2 = metrics(&db, "email", "c1", "weekly", "2026-11-09").await;
    assert_eq!(week2["trends"]["openRateTrend"], json!(20.0), "{week2}");
    assert_eq!(week2["trends"]["clickRateTrend"], json!(200.0), "{week2}");
    let week1 = metrics(&db, "email", "c1", "weekly", "2026-11-02").await;
    assert!(week1["trends"].get("openRateTrend").is_none(), "{week1}");

    // Templates: their own rows, last use and score.
    assert_eq!(
        counts(&metrics(&db, "template", "77", "weekly", "2026-11-02").await),
        [4, 4, 3, 1]
    );
    let (last_used, score): (Option<DateTime<Utc>>, Option<f64>) =
        sqlx::query_as("SELECT last_used, performance_score FROM email_templates WHERE id = 77")
            .fetch_one(&db)
            .await
            .expect("template");
    assert_eq!(last_used, Some(at("2026-11-03T12:00:00Z")));
    assert_eq!(score, Some(45.0));

    // Team: messages in campaign channels only, replies, one discussion, the approval's 2 h.
    let team = metrics(&db, "team", "", "weekly", "2026-11-02").await;
    assert_eq!(team["messagesPosted"], json!(4), "{team}");
    assert_eq!(team["threadReplies"], json!(2));
    assert_eq!(team["taskDiscussions"], json!(1));
    assert_eq!(team["approvalsProcessed"], json!(1));
    assert_eq!(team["averageResponseTime"], json!(7200.0));
    assert_eq!(team["activeUsers"], json!(2));
    let top = &team["topContributors"];
    assert_eq!(top[0]["slackUserId"], "U2", "{top}");
    assert_eq!(
        top[0]["activityScore"],
        json!(7),
        "1 message + 1 reply + 5 for the approval"
    );
    assert_eq!(top[0]["userId"], "tm-2");
    assert_eq!(top[1]["name"], "Ada Lovelace");
    assert_eq!(top[1]["activityScore"], json!(4));
    let daily = metrics(&db, "team", "c1", "daily", "2026-11-03").await;
    assert_eq!(
        (
            daily["messagesPosted"].clone(),
            daily["activeUsers"].clone()
        ),
        (json!(1), json!(1))
    );

    // A rerun, and a backfill of an overlapping window, write the same rows.
    let before = rows(&db).await;
    assert!(before.len() > 30, "{}", before.len());
    plan.run(&db, |_| {}).await.expect("rerun");
    assert_eq!(rows(&db).await, before, "a rerun changed rows");
    Plan::window(day("2026-11-02"), day("2026-11-06"))
        .run(&db, |_| {})
        .await
        .expect("backfill");
    assert_eq!(rows(&db).await, before, "a partial backfill changed rows");

    // A late click on 11-20 (weeks after the send) arrives: the incremental plan finds its day
    // alone, and the periods it belongs to change — nothing else.
    let mark = Utc::now();
    exec(&db, "
        UPDATE email_sends SET first_clicked_at = '2026-11-20T08:00:00Z' WHERE email = 'c@example.com';
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'click', '2026-11-20T08:00:00Z' FROM email_sends WHERE email = 'c@example.com';
    ").await;
    let late = Plan::changed_since(&db, mark).await.expect("plan");
    let days: Vec<String> = late.email_days.iter().map(ToString::to_string).collect();
    assert_eq!(days, ["2026-11-20"]);
    assert!(late.team_days.is_empty());
    late.run(&db, |_| {}).await.expect("incremental");
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "daily", "2026-11-20").await),
        [0, 0, 0, 1]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "weekly", "2026-11-16").await),
        [0, 0, 0, 1]
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c2", "monthly", "2026-11-01").await),
        [4, 4, 3, 2]
    );
    let after = rows(&db).await;
    let changed: Vec<_> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|r| (r.0.clone(), r.1.clone(), r.2, r.3.clone(), r.4))
        .collect();
    assert!(
        changed.iter().all(|r| r.4 >= day("2026-11-01")),
        "{changed:?}"
    );
    assert!(
        !changed.iter().any(|r| r.1 == "c1"),
        "c1 had no change: {changed:?}"
    );

    // A second bounce moves the send's bounce to its own day: both days are recomputed.
    exec(&db, "
        UPDATE email_sends SET bounced_at = '2026-11-08T08:00:00Z' WHERE email = 'd@example.com';
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'bounce', '2026-11-08T08:00:00Z' FROM email_sends WHERE email = 'd@example.com';
    ").await;
    Plan::window(day("2026-11-08"), day("2026-11-08"))
        .run(&db, |_| {})
        .await
        .expect("rollup");
    assert_eq!(
        metrics(&db, "email", "c2", "daily", "2026-11-08").await["bounced"],
        json!(1)
    );
    let mark = Utc::now();
    exec(&db, "
        UPDATE email_sends SET bounced_at = '2026-11-21T08:00:00Z' WHERE email = 'd@example.com';
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'bounce', '2026-11-21T08:00:00Z' FROM email_sends WHERE email = 'd@example.com';
    ").await;
    let moved = Plan::changed_since(&db, mark).await.expect("plan");
    let days: Vec<String> = moved.email_days.iter().map(ToString::to_string).collect();
    assert_eq!(days, ["2026-11-08", "2026-11-21"]);
    moved.run(&db, |_| {}).await.expect("incremental");
    assert_eq!(
        metrics(&db, "email", "c2", "daily", "2026-11-08").await,
        Value::Null,
        "nothing is left on 11-08"
    );
    assert_eq!(
        metrics(&db, "email", "c2", "daily", "2026-11-21").await["bounced"],
        json!(1)
    );
    assert_eq!(
        metrics(&db, "email", "c2", "monthly", "2026-11-01").await["bounced"],
        json!(1)
    );
}

fn cli(env: &HashMap<String, String>, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run the binary")
}

#[tokio::test]
async fn the_api_rollup_and_report_read_the_rollups_over_http_and_as_processes() {
    let (db_url, db) = migrated_database().await;
    fixtures(&db).await;
    let app = spawn_app_with(db_url, db.clone(), |_| {}).await;
    let env = app.env.clone();

    // Backfill as an operator would, from the command line.
    let out = cli(
        &env,
        &["rollup", "--from", "2026-11-01", "--to", "2026-11-30"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("rolled up 2026-11-01 to 2026-11-30: 30 days"),
        "{said}"
    );

    let (status, email) = app
        .get_json("/api/analytics/email?period=weekly&from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(status, 200, "{email}");
    let starts: Vec<&str> = email["periods"]
        .as_array()
        .expect("periods")
        .iter()
        .filter_map(|p| p["periodStart"].as_str())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-10-26",
            "2026-11-02",
            "2026-11-09",
            "2026-11-16",
            "2026-11-23",
            "2026-11-30"
        ]
    );
    assert_eq!(
        email["periods"][0]["metrics"]["sent"],
        json!(0),
        "a period without figures is zeros"
    );
    assert_eq!(email["periods"][1]["metrics"]["sent"], json!(264));
    assert_eq!(
        email["periods"][2]["trends"]["openRateTrend"]
            .as_f64()
            .map(f64::round),
        Some(18.0),
        "from 103/244 to 20/40"
    );

    let (status, c1) = app
        .get_json(
            "/api/campaigns/c1/metrics?period=daily&from=2026-11-02&to=2026-11-03&historyLimit=2",
        )
        .await;
    assert_eq!(status, 200, "{c1}");
    assert_eq!(c1["periods"][1]["metrics"]["opened"], json!(40));
    assert_eq!(c1["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(c1["history"][0]["recordedAt"], "2026-11-03T09:00:00Z");
    let before = c1["nextHistoryBefore"].as_str().expect("a next page");
    let (_, page2) = app.get_json(&format!("/api/campaigns/c1/metrics?period=daily&from=2026-11-02&to=2026-11-03&historyLimit=2&historyBefore={}", before.replace('+', "%2B"))).await;
    assert_eq!(
        page2["history"].as_array().map(Vec::len),
        Some(1),
        "{page2}"
    );
    assert!(page2["nextHistoryBefore"].is_null());
    assert_eq!(app.get_json("/api/campaigns/nope/metrics").await.0, 404);

    let (status, team) = app
        .get_json("/api/analytics/team?period=weekly&from=2026-11-02&to=2026-11-08")
        .await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(
        team["periods"][0]["metrics"]["approvalsProcessed"],
        json!(1)
    );
    let b = &team["bottlenecks"];
    assert_eq!(b["waitingLongest"][0]["approvalId"], "apr-2", "{b}");
    assert_eq!(b["slowestApprovers"][0]["approverId"], "tm-2");
    assert_eq!(b["slowestApprovers"][0]["pending"], json!(1));
    let quiet: Vec<&str> = b["quietCampaigns"]
        .as_array()
        .expect("quiet")
        .iter()
        .filter_map(|q| q["campaignId"].as_str())
        .collect();
    assert_eq!(
        quiet,
        ["c3", "c1"],
        "never-heard-from first, then the longest silent"
    );
    let (_, one) = app
        .get_json("/api/analytics/team?period=daily&from=2026-11-03&to=2026-11-03&campaignId=c1")
        .await;
    assert_eq!(
        one["periods"][0]["metrics"]["messagesPosted"],
        json!(1),
        "{one}"
    );

    // Top content: three-figure samples only by default; c2's 4 sends rank when allowed.
    let (_, top) = app
        .get_json("/api/analytics/top-content?period=weekly&start=2026-11-04")
        .await;
    let ids = |v: &Value, k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&top, "campaigns"), ["c1"], "{top}");
    assert!(ids(&top, "templates").is_empty());
    let (_, top) = app
        .get_json("/api/analytics/top-content?period=weekly&start=2026-11-02&minDelivered=1")
        .await;
    assert_eq!(
        ids(&top, "campaigns"),
        ["c2", "c1"],
        "45 beats c1's score: {top}"
    );
    assert_eq!(ids(&top, "templates"), ["77"]);

    // Bad input: named, 4xx, nothing else.
    for (path, status, field) in [
        ("/api/analytics/email?period=yearly", 400, "period"),
        ("/api/analytics/email?from=2026-13-01", 400, "from"),
        (
            "/api/analytics/email?from=2026-11-30&to=2026-11-01",
            422,
            "from",
        ),
        (
            "/api/analytics/email?from=0001-01-01&to=9999-12-31",
            422,
            "from",
        ),
        ("/api/analytics/top-content?limit=0", 400, "limit"),
        ("/api/analytics/team?campaignId=a%20b", 400, "campaignId"),
        (
            "/api/campaigns/c1/metrics?historyLimit=5000",
            400,
            "historyLimit",
        ),
        ("/api/templates?sort=best", 400, "sort"),
    ] {
        let (got, body) = app.get_json(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.to_string().contains(field), "{path}: {body}");
    }

    // Revenue reported later shows after the next rollup.
    let (status, put) = app
        .put_json(
            "/api/campaigns/c1/revenue/2026-11-10",
            &json!({ "amount": 99.999 }),
        )
        .await;
    assert_eq!(
        (status, put["amount"].clone()),
        (200, json!(100.0)),
        "{put}"
    );
    assert_eq!(
        app.put_json(
            "/api/campaigns/nope/revenue/2026-11-10",
            &json!({ "amount": 1 })
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.put_json(
            "/api/campaigns/c1/revenue/2026-11-10",
            &json!({ "amount": -1 })
        )
        .await
        .0,
        400
    );
    let out = cli(
        &env,
        &["rollup", "--from", "2026-11-10", "--to", "2026-11-10"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, c1) = app
        .get_json("/api/campaigns/c1/metrics?period=monthly&from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(c1["periods"][0]["metrics"]["revenue"], json!(100.0), "{c1}");

    // The engagement report, both formats.
    let out = cli(
        &env,
        &[
            "report",
            "--period",
            "weekly",
            "--date",
            "2026-11-04",
            "--format",
            "csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period,period_start,campaign_id,campaign_name,sent,"));
    assert!(
        lines[1].starts_with("weekly,2026-11-02,c1,Spring,260,240,100,20,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("weekly,2026-11-02,c2,Summer,4,4,3,1,"),
        "{csv}"
    );
    let out = cli(
        &env,
        &[
            "report",
            "--period",
            "monthly",
            "--date",
            "2026-11-04",
            "--format",
            "json",
        ],
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(json[0]["metrics"]["revenue"], json!(100.0));
}

#[tokio::test]
async fn templates_are_listed_for_selection_and_a_request_lacking_their_variables_is_refused() {
    let (db_url, db) = migrated_database().await;
    fixtures(&db).await;
    Plan::window(day("2026-11-01"), day("2026-11-30"))
        .run(&db, |_| {})
        .await
        .expect("rollup");
    let app = spawn_app_with(db_url, db.clone(), |_| {}).await;

    let (status, page) = app
        .get_json("/api/templates?sort=performance&limit=1")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], json!(77));
    assert_eq!(page["items"][0]["performanceScore"], json!(45.0));
    assert_eq!(page["items"][0]["lastUsed"], "2026-11-03T12:00:00Z");
    assert_eq!(
        page["items"][0]["variables"],
        json!([{ "name": "first_name", "required": true }, { "name": "cta", "default": "Go", "required": false }])
    );
    assert_eq!(page["nextOffset"], json!(1));
    let (_, page) = app.get_json("/api/templates?category=newsletter").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["id"], json!(78));

    let body = json!({ "campaignId": "c2", "templateId": 77, "recipients": [
        { "email": "x@example.com", "variables": { "first_name": "X" } },
        { "email": "y@example.com" },
        { "email": "z@example.com", "variables": { "first_name": null, "cta": "Buy" } },
    ]});
    let response = app
        .client
        .post(app.url("/api/email-requests"))
        .bearer_auth(&app.env["API_TOKEN"])
        .header("idempotency-key", "vars-1")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    let refused: Value = response.json().await.expect("json");
    let items = refused["error"]["items"].as_array().expect("items");
    assert_eq!(
        items
            .iter()
            .map(|i| i["index"].as_u64())
            .collect::<Vec<_>>(),
        [Some(1), Some(2)],
        "{refused}"
    );
    assert!(items[0].to_string().contains("first_name"), "{refused}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM email_sends WHERE email LIKE '_@example.com' AND email IN ('x@example.com','y@example.com','z@example.com')")
        .fetch_one(&db).await.expect("count");
    assert_eq!(stored, 0, "nothing stored");
}

#[tokio::test]
async fn slack_messages_become_team_activity_and_their_text_is_never_stored() {
    let w = crate::slack_workflows::world(|_| {}).await;
    let channel = w.channels[0].clone();
    let (user, email) = w.users[0].clone();
    crate::slack_workflows::seed(&w, "launch", &channel, "tm-launch", &email).await;
    let base = w.sandbox.base_url();
    let client = reqwest::Client::new();
    let mut parent = String::new();
    for i in 0..3 {
        let mut event = json!({ "type": "message", "user": user, "channel": channel, "text": format!("the secret plan {i}") });
        if i == 2 {
            event["thread_ts"] = json!(parent);
        }
        let sent: Value = client
            .post(format!("{base}/_sandbox/slack/events"))
            .json(&event)
            .send()
            .await
            .expect("event")
            .json()
            .await
            .expect("json");
        assert_eq!(sent["first_delivery"]["status"], json!(200), "{sent}");
        if i == 0 {
            parent = sent["envelope"]["event"]["ts"]
                .as_str()
                .expect("ts")
                .to_owned();
        }
    }
    // A bot's message and an edit are not messages posted.
    let bot = json!({ "type": "message", "user": user, "channel": channel, "text": "x" });
    let mut replay: Value = client
        .post(format!("{base}/_sandbox/slack/events"))
        .json(&bot)
        .send()
        .await
        .expect("event")
        .json()
        .await
        .expect("json");
    replay["envelope"]["event"]["bot_id"] = json!("B1");
    replay["envelope"]["event_id"] = json!("EvBOT1");
    client
        .post(format!("{base}/_sandbox/slack/events"))
        .json(&json!({ "type": "message", "replay": replay["envelope"] }))
        .send()
        .await
        .expect("replay");
    let db = w.app.db.clone();
    eventually(Duration::from_secs(30), "the messages stored", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_events WHERE event_type = 'message' AND status <> 'received'")
                .fetch_one(&db).await.unwrap_or(0) == 5
        }
    }).await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM slack_messages")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(
        kept, 4,
        "three posts and the first of the bot-less pair; the bot's copy is not counted"
    );
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_events WHERE payload::text LIKE '%secret plan%'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(leaked, 0, "message text was stored");

    let today = Utc::now().date_naive().to_string();
    let out = cli(&w.app.env, &["rollup", "--from", &today]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, team) = w
        .app
        .get_json(&format!(
            "/api/analytics/team?period=daily&from={today}&to={today}&campaignId=launch"
        ))
        .await;
    let m = &team["periods"][0]["metrics"];
    assert_eq!(
        (
            m["messagesPosted"].clone(),
            m["threadReplies"].clone(),
            m["taskDiscussions"].clone()
        ),
        (json!(4), json!(1), json!(1)),
        "{team}"
    );
    assert_eq!(m["topContributors"][0]["slackUserId"], json!(user));
    w.worker.stop().await;
}

#[tokio::test]
async fn the_hourly_job_in_a_worker_process_computes_every_day_first_then_only_what_changed() {
    let (db_url, db) = migrated_database().await;
    fixtures(&db).await;
    let mut env = crate::helpers::test_env(&db_url);
    env.insert("SCHEDULE_ROLLUP_METRICS".into(), "*/2 * * * * *".into());
    let worker = crate::chaos::WorkerProcess::spawn(&env);
    let runs = |db: PgPool| async move {
        sqlx::query_scalar::<_, Value>("SELECT counts FROM sync_runs WHERE job = 'rollup_metrics' AND status = 'succeeded' ORDER BY started_at")
            .fetch_all(&db)
            .await
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(60), "a first rollup run", || {
        let db = db.clone();
        async move { !runs(db).await.is_empty() }
    })
    .await;
    let first = runs(db.clone()).await.remove(0);
    assert!(
        first["since"].is_null(),
        "the first run has no run before it: {first}"
    );
    assert_eq!(
        first["email_days"],
        json!(9),
        "every day from the first data (11-02) to the last (11-10): {first}"
    );
    assert_eq!(
        counts(&metrics(&db, "email", "c1", "weekly", "2026-11-02").await),
        [260, 240, 100, 20]
    );

    exec(&db, "
        UPDATE email_sends SET first_clicked_at = '2026-11-20T08:00:00Z' WHERE email = 'c@example.com';
        INSERT INTO email_events (send_id, event_type, occurred_at) SELECT id, 'click', '2026-11-20T08:00:00Z' FROM email_sends WHERE email = 'c@example.com';
    ").await;
    eventually(
        Duration::from_secs(60),
        "the late click rolled up by a later run",
        || {
            let db = db.clone();
            async move {
                counts(&metrics(&db, "email", "c2", "monthly", "2026-11-01").await) == [4, 4, 3, 2]
                    && runs(db).await.len() >= 2
            }
        },
    )
    .await;
    let later = runs(db.clone()).await;
    let last = later.last().expect("runs");
    assert!(later.len() >= 2 && !last["since"].is_null(), "{later:?}");
    // (Within OVERLAP of the fixtures' insertion every run still sees them as changed; what
    // "only what changed" means for the days is asserted on the plan in the first test.)
    drop(worker);
}
