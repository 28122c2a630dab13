//! The settings of the alerts the service raises about itself (`jobs::evaluate_alerts`):
//! where they go, how often a lasting one is repeated, and each rule's threshold; and who may
//! act from Slack (`/campaign-sync retry-dead`).

use super::reader::{Reader, need};
use super::settings::AlertSettings;
use super::workflows::parse_duration;

pub(super) fn read(r: &mut Reader<'_>) -> AlertSettings {
    let mut duration = |key: &str| {
        let value = r.parse(key, parse_duration);
        need(r, key, value)
    };
    let repeat_after = duration("alerts.repeat_after");
    let window = duration("alerts.window");
    let upstream_latency = duration("alerts.upstream_latency");
    let token_expiry = duration("alerts.token_expiry");
    let email_stuck = duration("alerts.email_stuck");
    let webhook_silence = duration("alerts.webhook_silence");
    let mut number = |key: &str, min: i128, max: i128| {
        let value = r.number::<u32>(key, min, max);
        need(r, key, value)
    };
    let sync_failures = number("alerts.sync_failures", 1, 100);
    let upstream_error_percent = number("alerts.upstream_error_percent", 1, 100);
    let rate_limit_percent = number("alerts.rate_limit_percent", 1, 100);
    let webhook_min_sends = number("alerts.webhook_min_sends", 1, 1_000_000);
    let slack_channel = r.parse("alerts.slack_channel", |raw| {
        if is_slack_id(raw, &['C', 'G']) {
            Ok(raw.to_owned())
        } else {
            Err("expected a Slack channel id such as C0123ABCD".to_owned())
        }
    });
    let command_admins = r
        .parse("alerts.command_admins", parse_user_ids)
        .unwrap_or_default();
    AlertSettings {
        slack_channel,
        repeat_after,
        window,
        sync_failures,
        upstream_error_percent,
        upstream_latency,
        rate_limit_percent,
        token_expiry,
        email_stuck,
        webhook_silence,
        webhook_min_sends,
        command_admins,
    }
}

/// A Slack id starting with one of `first`, then 2–20 capitals and digits.
fn is_slack_id(s: &str, first: &[char]) -> bool {
    (3..=21).contains(&s.len())
        && s.starts_with(first)
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// `U0123,U0456` as Slack user ids.
fn parse_user_ids(raw: &str) -> Result<Vec<String>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            if is_slack_id(id, &['U', 'W']) {
                Ok(id.to_owned())
            } else {
                Err(format!("{id:?} is not a Slack user id such as U0123ABCD"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn admins_are_slack_user_ids() {
        assert_eq!(
            parse_user_ids(" U01, W0AB2 ,"),
            Ok(vec!["U01".to_owned(), "W0AB2".to_owned()])
        );
        assert!(parse_user_ids("U01,bob").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    }
}
