use std::str::FromStr;

use super::*;
use crate::telemetry::timeline::Health;

fn settings() -> AlertSettings {
    AlertSettings {
        slack_channel: None,
        repeat_after: Duration::from_secs(3600),
        window: Duration::from_secs(15 * 60),
        sync_failures: 3,
        upstream_error_percent: 10,
        upstream_latency: Duration::from_secs(5),
        rate_limit_percent: 25,
        token_expiry: Duration::from_secs(3600),
        email_stuck: Duration::from_secs(3600),
        webhook_silence: Duration::from_secs(3600),
        webhook_min_sends: 20,
        command_admins: Vec::new(),
    }
}

fn every_minute() -> BTreeMap<String, Schedule> {
    let expression = "0 * * * * *";
    BTreeMap::from([(
        "sync_mailjet_stats".to_owned(),
        Schedule {
            expression: expression.to_owned(),
            cron: cron::Schedule::from_str(expression).ok(),
        },
    )])
}

fn streak(job: &str, runs: i64, failed: i64, since_success_secs: Option<i64>) -> RunStreak {
    let now = Utc::now();
    RunStreak {
        job: job.to_owned(),
        runs,
        failed,
        last_error: Some("mailjet /statcounters: HTTP 500".to_owned()),
        last_success: since_success_secs.map(|s| now - chrono::Duration::seconds(s)),
        first_run: now - chrono::Duration::days(1),
    }
}

fn rules_of(conditions: &[Condition]) -> Vec<(&str, &str)> {
    conditions
        .iter()
        .map(|c| (c.rule, c.subject.as_str()))
        .collect()
}

#[test]
fn a_sync_fails_after_the_set_number_of_failed_runs_in_a_row() {
    let s = settings();
    let now = Utc::now();
    let two = sync(
        &[streak("sync_mailjet_stats", 3, 2, Some(30))],
        &every_minute(),
        &s,
        now,
    );
    assert!(two.is_empty(), "{two:?}");
    let three = sync(
        &[streak("sync_mailjet_stats", 3, 3, Some(30))],
        &every_minute(),
        &s,
        now,
    );
    assert_eq!(rules_of(&three), [("sync_failing", "sync_mailjet_stats")]);
    assert!(
        three[0].summary.contains("HTTP 500"),
        "{}",
        three[0].summary
    );
    // A job without a schedule is not watched.
    let unscheduled = sync(
        &[streak("process_webhook_events", 3, 3, Some(30))],
        &every_minute(),
        &s,
        now,
    );
    assert!(unscheduled.is_empty());
}

#[test]
fn a_sync_is_stale_after_twice_its_period_with_a_floor_of_two_minutes() {
    let s = settings();
    let now = Utc::now();
    let fresh = sync(
        &[streak("sync_mailjet_stats", 1, 0, Some(110))],
        &every_minute(),
        &s,
        now,
    );
    assert!(fresh.is_empty(), "{fresh:?}");
    let stale = sync(
        &[streak("sync_mailjet_stats", 1, 0, Some(130))],
        &every_minute(),
        &s,
        now,
    );
    assert_eq!(rules_of(&stale), [("sync_stale", "sync_mailjet_stats")]);
    // Never succeeded: counted from the first run.
    let never = sync(
        &[streak("sync_mailjet_stats", 1, 1, None)],
        &every_minute(),
        &s,
        now,
    );
    assert!(
        never[0].summary.contains("never succeeded"),
        "{}",
        never[0].summary
    );
}

#[test]
fn dead_letters_name_their_queue_and_page() {
    let c = dead(
        &[("default".to_owned(), 0), ("email".to_owned(), 2)],
        &settings(),
    );
    assert_eq!(rules_of(&c), [("dead_letters", "email")]);
    assert_eq!(c[0].link, "/dashboard/dead?queue=email");
}

fn tally(calls: i64, errors: i64, ms: i64) -> Tally {
    let mut t = Tally::default();
    t.endpoints.insert(
        ("mailjet".to_owned(), "/v3/REST/statcounters".to_owned()),
        Health { calls, errors, ms },
    );
    t
}

#[test]
fn upstream_error_rate_latency_and_reachability_have_thresholds() {
    let s = settings();
    assert!(upstream(&tally(100, 9, 100), &s).is_empty());
    assert_eq!(
        rules_of(&upstream(&tally(100, 10, 100), &s)),
        [("upstream_errors", "mailjet")]
    );
    // Too few calls to judge a rate.
    assert!(upstream(&tally(9, 9, 9), &s).is_empty());
    assert_eq!(
        rules_of(&upstream(&tally(5, 0, 25_000), &s)),
        [("upstream_slow", "mailjet")]
    );
    assert!(upstream(&tally(5, 0, 24_995), &s).is_empty());
    let mut down = tally(4, 4, 40);
    down.unreachable.insert("mailjet".to_owned(), 3);
    assert_eq!(
        rules_of(&upstream(&down, &s)),
        [("upstream_unreachable", "mailjet")]
    );
    // One success among them: not unreachable (and too few calls for a rate).
    let mut flaky = tally(4, 3, 40);
    flaky.unreachable.insert("mailjet".to_owned(), 3);
    assert!(upstream(&flaky, &s).is_empty());
}

#[test]
fn refused_credentials_and_rate_limit_waits_raise_their_alerts() {
    let s = settings();
    let mut t = Tally::default();
    t.auth_failures.insert("slack".to_owned(), 2);
    assert!(upstream(&t, &s).is_empty());
    t.auth_failures.insert("slack".to_owned(), 3);
    t.waits.insert("mailjet".to_owned(), 224_999);
    assert_eq!(rules_of(&upstream(&t, &s)), [("auth_failing", "slack")]);
    // 25 % of 15 minutes.
    t.waits.insert("mailjet".to_owned(), 225_000);
    assert_eq!(
        rules_of(&upstream(&t, &s)),
        [("auth_failing", "slack"), ("rate_limited", "mailjet")]
    );
}

fn install(status: &str, expires_in_secs: Option<i64>) -> Install {
    Install {
        workspace_id: "T0001".to_owned(),
        team_name: Some("Campaign HQ".to_owned()),
        status: status.to_owned(),
        expires_at: expires_in_secs.map(|s| Utc::now() + chrono::Duration::seconds(s)),
        revoked_why: (status == "revoked").then(|| "tokens_revoked".to_owned()),
    }
}

#[test]
fn revoked_installs_and_tokens_about_to_expire_are_alerts() {
    let s = settings();
    let now = Utc::now();
    assert!(
        installs(
            &[install("active", Some(7200)), install("active", None)],
            &s,
            now
        )
        .is_empty()
    );
    let soon = installs(&[install("active", Some(600))], &s, now);
    assert_eq!(rules_of(&soon), [("token_expiring", "slack:T0001")]);
    let revoked = installs(&[install("revoked", Some(600))], &s, now);
    assert_eq!(rules_of(&revoked), [("install_revoked", "slack:T0001")]);
    assert!(revoked[0].summary.contains("tokens_revoked"));
}

#[test]
fn stuck_requests_and_a_silent_webhook_are_alerts() {
    let s = settings();
    let stuck = StuckRequest {
        request_id: uuid::Uuid::nil(),
        campaign_id: "spring".to_owned(),
        waiting: 4,
        due_since: Utc::now() - chrono::Duration::hours(2),
        last_error: None,
    };
    let c = email(&[stuck], (19, false), &s);
    assert_eq!(
        rules_of(&c),
        [("email_stuck", "00000000-0000-0000-0000-000000000000")]
    );
    assert!(email(&[], (20, true), &s).is_empty());
    assert_eq!(
        rules_of(&email(&[], (20, false), &s)),
        [("webhook_silent", "mailjet")]
    );
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(human(Duration::from_secs(90)), "1m 30s");
    assert_eq!(human(Duration::from_secs(7200)), "2h");
    assert_eq!(
        human(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
        "3d 4h"
    );
    assert_eq!(human(Duration::from_millis(250)), "250ms");
}

#[test]
fn every_rule_belongs_to_one_group() {
    let mut all: Vec<&str> = Group::ALL
        .iter()
        .flat_map(|g| g.rules().iter().copied())
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n);
}
