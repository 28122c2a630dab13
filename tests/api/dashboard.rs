//! The dashboard in a real browser: the web and worker binaries as separate processes over a
//! seeded deployment, driven by headless Chromium through playwright-core
//! (`tests/browser/dashboard.mjs`): sign in, every page with data, retry a dead task and see it
//! succeed, pause and resume a queue, cancel a request, a viewer refused, a POST without the
//! CSRF token refused. Screenshots land in `target/dashboard-screenshots/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use campaign_sync::jobs::diagnostics_probe;
use campaign_sync::queue::{EnqueueOptions, Queue, dead};
use serde_json::json;
use sqlx::PgPool;

use crate::chaos::WorkerProcess;
use crate::helpers::{closed_port, eventually, migrated_database, redis_conn, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-sync");
const ADMIN: &str = "admin-token-0123456789abcdef";
const VIEWER: &str = "viewer-token-0123456789abcdef";

/// A `campaign-sync web` process (killed when dropped).
pub(crate) struct WebProcess {
    child: Child,
    pub(crate) base: String,
}

impl WebProcess {
    pub(crate) async fn spawn(env: &HashMap<String, String>) -> Self {
        let port = closed_port();
        let child = Command::new(BIN)
            .env_clear()
            .envs(env)
            .env("PORT", port.to_string())
            .arg("web")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn web");
        let base = format!("http://127.0.0.1:{port}");
        let url = format!("{base}/healthz");
        eventually(Duration::from_secs(30), "the web process answers", || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        WebProcess { child, base }
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .expect("seed");
}

/// A campaign with five days of statistics, a request half sent, webhook intake with one
/// rejection, a pending approval and runs of a scheduled job.
async fn seed(db: &PgPool) -> String {
    exec(db, "
        INSERT INTO campaigns (id, name, status) VALUES ('spring-launch', 'Spring launch', 'active'), ('autumn', 'Autumn sale', 'draft');
        INSERT INTO mcp_integrations (service, external_id, internal_id, last_synced) VALUES
            ('mailjet', '7001', 'spring-launch', now()), ('slack', 'C0SPRING', 'spring-launch', now());
        INSERT INTO email_statistics (campaign_id, mailjet_campaign_id, sent, delivered, opened, clicked, bounced, open_rate, click_rate, engagement_score, recorded_at)
        SELECT 'spring-launch', 7001, 100 * d, 95 * d, 30 * d + 4 * d * d, 8 * d + d * d, 5 * d, 0.3 + 0.04 * d, 0.08 + 0.01 * d, 18 + 1.5 * d, now() - make_interval(days => 5 - d)
        FROM generate_series(1, 5) d;
        INSERT INTO email_templates (id, name) VALUES (4242, 'Spring');
        INSERT INTO team_members (id, email, name) VALUES ('ada', 'ada@example.com', 'Ada');
        INSERT INTO approvals (id, campaign_id, stage, approver_id, deadline) VALUES ('ap-1', 'spring-launch', 'legal', 'ada', now() + interval '2 days');
        INSERT INTO webhook_events (source, external_id, event_type, payload, status) VALUES
            ('mailjet', 'e1', 'open', '{}', 'processed'), ('mailjet', 'e2', 'open', '{}', 'processed'), ('slack_events', 'Ev1', 'message', '{}', 'processed');
        INSERT INTO webhook_rejections (source, position, raw, digest, reason) VALUES
            ('mailjet', 0, '{\"event\":\"open\"}', repeat('a', 64), 'missing field MessageID');
        INSERT INTO sync_runs (job, trigger, status, started_at, finished_at, items_synced, counts) VALUES
            ('sync_mailjet_stats', 'schedule', 'succeeded', now() - interval '10 minutes', now() - interval '9 minutes', 3, '{\"note\": \"3 campaigns synced\"}'),
            ('sync_mailjet_stats', 'schedule', 'failed', now() - interval '5 minutes', now() - interval '5 minutes', 0, '{}');
    ").await;
    let request: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count, scheduled_at, status)
         VALUES ('dash-1', 'seeded', 'spring-launch', 4242, 3, now() + interval '1 day', 'sending') RETURNING id",
    )
    .fetch_one(db)
    .await
    .expect("request");
    sqlx::query(
        "INSERT INTO email_sends (request_id, email, status, sent_at) VALUES
            ($1, 'ada@example.com', 'sent', now()), ($1, 'grace@example.com', 'pending', NULL), ($1, 'linus@example.com', 'pending', NULL)",
    )
    .bind(request)
    .execute(db)
    .await
    .expect("sends");
    request.to_string()
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_service_from_a_real_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = chromium().expect("chromium (scripts/services.sh installs it)");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core (scripts/services.sh installs it into tests/browser)"
    );
    let (db_url, db) = migrated_database().await;
    let request = seed(&db).await;
    let mut env = test_env(&db_url);
    env.insert("DASHBOARD_ADMIN_TOKEN".into(), ADMIN.into());
    env.insert("DASHBOARD_VIEWER_TOKEN".into(), VIEWER.into());
    // Only what the test does runs: no schedule competes with it.
    for job in campaign_sync::jobs::schedulable() {
        env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            "off".into(),
        );
    }
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let worker = WorkerProcess::spawn(&env);
    let web = WebProcess::spawn(&env).await;

    // A probe that dies while its "upstream" is broken; the outage then ends.
    let mut redis = redis_conn().await;
    let _: () = redis::cmd("SET")
        .arg(diagnostics_probe::broken_key(&prefix, "dash"))
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("break");
    let queue = Queue::new(redis.clone(), &prefix, "default");
    queue
        .enqueue(
            diagnostics_probe::NAME,
            json!({"tag": "dash", "fail_while_broken": true}),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    eventually(Duration::from_secs(60), "the probe is dead", || {
        let queue = queue.clone();
        async move { dead::list(&queue, 0, 10).await.is_ok_and(|d| d.len() == 1) }
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(diagnostics_probe::broken_key(&prefix, "dash"))
        .query_async(&mut redis)
        .await
        .expect("fix");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    let browser_run = tokio::task::spawn_blocking({
        let browser_dir = browser_dir.clone();
        let base = web.base.clone();
        let request = request.clone();
        move || {
            Command::new("node")
                .arg(browser_dir.join("dashboard.mjs"))
                .current_dir(&browser_dir)
                .env("BASE", base)
                .env("ADMIN_TOKEN", ADMIN)
                .env("VIEWER_TOKEN", VIEWER)
                .env("REQUEST_ID", request)
                .env("CAMPAIGN_ID", "spring-launch")
                .env("SHOTS", shots)
                .env("CHROMIUM", chromium)
                .output()
                .expect("node")
        }
    })
    .await
    .expect("join");
    let said = String::from_utf8_lossy(&browser_run.stdout);
    println!("{said}");
    assert!(
        browser_run.status.success(),
        "the browser run failed:\n{said}\n{}\nworker log:\n{}",
        String::from_utf8_lossy(&browser_run.stderr),
        worker.log()
    );

    // What the clicks did, seen from outside the browser.
    eventually(
        Duration::from_secs(30),
        "the retried probe succeeded",
        || {
            let mut redis = redis.clone();
            let key = diagnostics_probe::counter_key(&prefix, "dash");
            async move {
                let finished: Option<i64> = redis::cmd("HGET")
                    .arg(&key)
                    .arg("finished")
                    .query_async(&mut redis)
                    .await
                    .unwrap_or(None);
                finished == Some(1)
            }
        },
    )
    .await;
    assert!(dead::list(&queue, 0, 10).await.expect("dead").is_empty());
    assert!(queue.paused().await.expect("paused").is_none(), "resumed");
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT email, status FROM email_sends ORDER BY email")
            .fetch_all(&db)
            .await
            .expect("sends");
    assert_eq!(
        statuses,
        [
            ("ada@example.com", "sent"),
            ("grace@example.com", "cancelled"),
            ("linus@example.com", "cancelled")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE actor LIKE 'dashboard:%' AND action NOT LIKE 'dashboard.%' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .expect("audit");
    let ops = |a: &str| ("dashboard:admin:Ops".to_owned(), a.to_owned());
    assert_eq!(
        actions,
        vec![
            ops("dead_letters.retry"),
            ops("queue.pause"),
            ops("queue.resume"),
            ops("email_request.cancel")
        ],
        "every action audited with who, nothing the refused ones tried"
    );
    drop(web);
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_taken_by_no_worker_until_it_is_resumed_then_each_task_runs_once() {
    let (db_url, _db) = migrated_database().await;
    let mut env = test_env(&db_url);
    for job in campaign_sync::jobs::schedulable() {
        env.insert(
            format!("SCHEDULE_{}", job.name.to_uppercase()),
            "off".into(),
        );
    }
    let prefix = env["REDIS_KEY_PREFIX"].clone();
    let workers = [WorkerProcess::spawn(&env), WorkerProcess::spawn(&env)];
    let queue = Queue::new(redis_conn().await, &prefix, "default");
    queue.pause("test").await.expect("pause");
    for _ in 0..20 {
        queue
            .enqueue(
                diagnostics_probe::NAME,
                json!({"tag": "paused"}),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue");
    }
    let started = |redis: redis::aio::ConnectionManager, field: &'static str| {
        let key = diagnostics_probe::counter_key(&prefix, "paused");
        async move {
            let mut redis = redis;
            redis::cmd("HGET")
                .arg(&key)
                .arg(field)
                .query_async::<Option<i64>>(&mut redis)
                .await
                .unwrap_or(None)
                .unwrap_or(0)
        }
    };
    // Both workers poll several times a second; three seconds is many rounds of not taking.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = redis_conn().await;
    assert_eq!(
        started(redis.clone(), "started").await,
        0,
        "a paused queue gives no task to any worker"
    );
    assert_eq!(queue.counts().await.expect("counts").waiting, 20);
    assert!(queue.resume().await.expect("resume"));
    eventually(
        Duration::from_secs(60),
        "every task ran after the resume",
        || {
            let redis = redis.clone();
            let started = &started;
            async move { started(redis, "finished").await == 20 }
        },
    )
    .await;
    assert_eq!(
        started(redis.clone(), "started").await,
        20,
        "each task ran once"
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_request_stops_its_pending_recipients_and_lets_in_flight_ones_finish() {
    let app = crate::helpers::spawn_app().await;
    exec(&app.db, "
        INSERT INTO campaigns (id, name, status) VALUES ('spring-launch', 'Spring launch', 'active');
        INSERT INTO email_templates (id, name) VALUES (4242, 'Spring');
    ").await;
    let request: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO email_requests (idempotency_key, request_hash, campaign_id, template_id, recipient_count, status)
         VALUES ('c-1', 'x', 'spring-launch', 4242, 3, 'sending') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .expect("request");
    sqlx::query(
        "INSERT INTO email_sends (request_id, email, status) VALUES
            ($1, 'a@example.com', 'sent'), ($1, 'b@example.com', 'sending'), ($1, 'c@example.com', 'pending')",
    )
    .bind(request)
    .execute(&app.db)
    .await
    .expect("sends");

    let (status, body) = app
        .post_json("/api/email-requests/not-a-uuid/cancel", &json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .post_json(
            &format!("/api/email-requests/{}/cancel", uuid::Uuid::new_v4()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let path = format!("/api/email-requests/{request}/cancel");
    let (status, body) = app.post_json(&path, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": request, "status": "sending", "cancelledRecipients": 1, "inFlight": 1, "changed": true})
    );
    // The in-flight send fails transiently and would be retried: it becomes cancelled instead.
    sqlx::query("UPDATE email_sends SET status = 'pending' WHERE email = 'b@example.com'")
        .execute(&app.db)
        .await
        .expect("retry");
    let finished = campaign_sync::store::email_requests::complete_finished(&app.db)
        .await
        .expect("complete");
    assert_eq!(finished, vec![request]);
    let (_, view) = app
        .get_json(&format!("/api/email-requests/{request}"))
        .await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["counts"]["sent"], 1, "{view}");
    assert_eq!(view["counts"]["cancelled"], 2, "{view}");
    let (status, again) = app.post_json(&path, &json!({})).await;
    assert_eq!((status, &again["changed"]), (200, &json!(false)), "{again}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'email_request.cancel' AND entity_id = $1 AND actor = 'api'",
    )
    .bind(request.to_string())
    .fetch_one(&app.db)
    .await
    .expect("audit");
    assert_eq!(audited, 1, "one cancellation, audited once");
}

#[tokio::test]
async fn sign_in_sessions_and_bad_input_answer_clear_4xx_pages_never_a_5xx() {
    let (db_url, db) = migrated_database().await;
    let unconfigured = crate::helpers::spawn_app_with(db_url.clone(), db.clone(), |_| {}).await;
    let r = unconfigured.get("/dashboard").await;
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("DASHBOARD_ADMIN_TOKEN")
    );

    let app = crate::helpers::spawn_app_with(db_url, db.clone(), |env| {
        env.insert("DASHBOARD_ADMIN_TOKEN".into(), ADMIN.into());
        env.insert("DASHBOARD_VIEWER_TOKEN".into(), VIEWER.into());
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let unsigned = client
        .get(app.url("/dashboard/queues"))
        .send()
        .await
        .expect("get");
    assert_eq!(unsigned.status(), 303);
    assert_eq!(unsigned.headers()["location"], "/dashboard/login");
    let unsigned_post = client
        .post(app.url("/dashboard/queues/pause"))
        .form(&[("queue", "default"), ("csrf", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(
        unsigned_post.status(),
        303,
        "an unsigned action does nothing but send to the sign-in"
    );

    let wrong = client
        .post(app.url("/dashboard/login"))
        .form(&[("name", "Eve"), ("token", "not-the-token-at-all")])
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let nameless = client
        .post(app.url("/dashboard/login"))
        .form(&[("name", ""), ("token", ADMIN)])
        .send()
        .await
        .expect("login");
    assert_eq!(nameless.status(), 400);
    let outside = client
        .post(app.url("/dashboard/login"))
        .form(&[
            ("name", "Ops"),
            ("token", ADMIN),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(outside.status(), 303);
    assert_eq!(
        outside.headers()["location"],
        "/dashboard",
        "never sent to another site"
    );
    let cookie = outside.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/dashboard",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session = cookie.split(';').next().expect("pair").to_owned();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT id_hash FROM dashboard_sessions")
        .fetch_one(&db)
        .await
        .expect("session");
    let raw = session.split_once('=').expect("value").1;
    assert!(
        !String::from_utf8_lossy(&stored).contains(raw),
        "only the id's hash is stored"
    );

    let get = |path: &str| client.get(app.url(path)).header("cookie", &session).send();
    for (path, status) in [
        ("/dashboard", 200),
        ("/dashboard/dead?offset=abc", 400),
        ("/dashboard/dead?queue=nope", 400),
        ("/dashboard/dead?error=", 200),
        ("/dashboard/dead/task?queue=default&id=missing", 404),
        ("/dashboard/dead/task", 400),
        ("/dashboard/schedules?job=nope", 400),
        ("/dashboard/schedules?status=odd", 400),
        ("/dashboard/email-requests?status=odd", 400),
        ("/dashboard/email-requests/not-a-uuid", 400),
        (
            "/dashboard/email-requests/00000000-0000-0000-0000-000000000000",
            404,
        ),
        ("/dashboard/campaigns?active=maybe", 400),
        ("/dashboard/campaigns/%20bad%20", 400),
        ("/dashboard/campaigns/unknown", 404),
        ("/dashboard/webhooks?before=x", 400),
        ("/dashboard/approvals?status=odd", 400),
        ("/dashboard/analytics?period=hourly", 400),
        ("/dashboard/audit?before=-x", 400),
        ("/dashboard/unknown?x=1", 404),
    ] {
        let r = get(path).await.expect("get");
        assert_eq!(r.status(), status, "{path}");
        if status != 200 {
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            let body = r.text().await.expect("body");
            assert!(
                ct.starts_with("text/html") || ct.starts_with("application/json"),
                "{path}: {ct}"
            );
            assert!(!body.is_empty(), "{path} says why");
        }
    }
    // Dead letters of two queues interleave by time of death, also past an offset.
    let mut redis = redis_conn().await;
    for (queue, id, at) in [
        ("default", "d1", 1000),
        ("slack", "s2", 2000),
        ("default", "d3", 3000),
        ("slack", "s4", 4000),
        ("default", "d5", 5000),
    ] {
        let q = Queue::new(redis.clone(), &app.redis_prefix, queue);
        let record = json!({"id": id, "job": "diagnostics_probe", "reason": format!("reason-{id}"), "died_at": at, "attempts": 1, "payload": "{}"});
        let _: () = redis::pipe()
            .hset(q.keys().dead(), id, record.to_string())
            .zadd(q.keys().dead_index(), id, at)
            .query_async(&mut redis)
            .await
            .expect("bury");
    }
    for (path, expected) in [
        ("/dashboard/dead", "d5 s4 d3 s2 d1"),
        ("/dashboard/dead?offset=2", "d3 s2 d1"),
        ("/dashboard/dead?queue=slack&offset=1", "s2"),
    ] {
        let body = get(path).await.expect("get").text().await.expect("body");
        let order: Vec<&str> = body
            .split("reason-")
            .skip(1)
            .filter_map(|rest| rest.split(['"', '<']).next())
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        for id in order {
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        assert_eq!(seen.join(" "), expected, "{path}");
    }
    let live = get("/dashboard/queues").await.expect("get");
    let headers = live.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("frame-ancestors 'none'")
    );
    let fragment = client
        .get(app.url("/dashboard/queues"))
        .header("cookie", &session)
        .header("x-dashboard-fragment", "1")
        .send()
        .await
        .expect("fragment")
        .text()
        .await
        .expect("body");
    assert!(
        !fragment.contains("<html") && fragment.contains("<table"),
        "a live update is just the live region"
    );

    let page = get("/dashboard")
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let out = client
        .post(app.url("/dashboard/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    let after = get("/dashboard").await.expect("get");
    assert_eq!(after.status(), 303, "a signed-out session no longer works");
}
