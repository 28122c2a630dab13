//! The settings of the Slack workflows: who may decide approvals, when approvers are
//! reminded, where decisions are sent.

use std::time::Duration;

use super::reader::{MIN_TOKEN_LEN, Reader};
use super::settings::WorkflowSettings;

pub(super) fn read(r: &mut Reader<'_>) -> WorkflowSettings {
    let offsets = r.parse("workflows.reminder_offsets", parse_offsets);
    let webhook_url = r.http_url("workflows.webhook_url");
    let webhook_secret = r.token("workflows.webhook_secret", MIN_TOKEN_LEN);
    if webhook_url.is_some() && webhook_secret.is_none() {
        r.problem(
            "workflows.webhook_secret",
            "is needed with CAMPAIGN_MANAGER_WEBHOOK_URL (webhooks are always signed)",
        );
    }
    if offsets.is_none() && r.raw("workflows.reminder_offsets").is_none() {
        r.problem("workflows.reminder_offsets", "is not set");
    }
    WorkflowSettings {
        approver_group: r
            .string("workflows.approver_group")
            .filter(|g| !g.is_empty()),
        reminder_offsets: offsets.unwrap_or_default(),
        webhook_url,
        webhook_secret,
    }
}

/// One duration such as `24h`, `30m`, `90s` or `2d`, from 1 s to 30 days.
pub fn parse_duration(part: &str) -> Result<Duration, String> {
    let digits = part
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(part.len());
    let (number, unit) = part.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{part:?} is not a duration such as 24h, 1h or 30m"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => return Err(format!("{part:?}: the unit must be d, h, m or s")),
    };
    if secs == 0 || secs > 30 * 86_400 {
        return Err(format!("{part:?} must be between 1 s and 30 days"));
    }
    Ok(Duration::from_secs(secs))
}

/// `24h,1h,30m,90s` as durations, longest first (at most 10, each 1 s to 30 days).
pub fn parse_offsets(raw: &str) -> Result<Vec<Duration>, String> {
    let mut offsets = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        offsets.push(parse_duration(part)?);
    }
    offsets.sort_by(|a, b| b.cmp(a));
    offsets.dedup();
    if offsets.len() > 10 {
        return Err("at most 10 reminders".to_owned());
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_units_and_sort_longest_first() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(
            parse_offsets("1h, 24h,30m"),
            Ok(vec![d(86_400), d(3_600), d(1_800)])
        );
        assert_eq!(parse_offsets("90s,2d"), Ok(vec![d(172_800), d(90)]));
        assert!(parse_offsets("1w").is_err());
        assert!(parse_offsets("0h").is_err());
        assert!(parse_offsets("h").is_err());
    }
}
