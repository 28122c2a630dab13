//! Block Kit for every message the workflows post: notifications (fields with their colour as
//! attachments, link buttons), the approver's interactive message and what replaces its
//! buttons, channel notices, reminders, the status card and the task thread. Text given by
//! the Campaign Manager is escaped (`&`, `<`, `>`), so it cannot mention or link by accident.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::store::notifications::NotificationInput;

/// Action ids of the buttons the service handles.
pub const APPROVE: &str = "approve";
pub const REJECT: &str = "reject";
pub const REQUEST_CHANGES: &str = "request_changes";
pub const MUTE_DMS: &str = "mute_dms";
/// `callback_id` of the "request changes" modal, and its input's ids.
pub const CHANGES_MODAL: &str = "approval_changes";
pub const COMMENT_BLOCK: &str = "comment";
pub const COMMENT_INPUT: &str = "comment_text";

/// Text, blocks and legacy attachments of one message.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub text: String,
    pub blocks: Value,
    pub attachments: Value,
}

/// `&`, `<` and `>` as Slack wants them in mrkdwn and plain text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(text, 3000) } })
}

fn context(text: &str) -> Value {
    json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": clip(text, 3000) }] })
}

/// A time as Slack shows it in the reader's own time zone, with a UTC fallback.
pub fn when(t: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        t.timestamp(),
        t.format("%Y-%m-%d %H:%M UTC")
    )
}

fn kind_title(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "status_change" => (":arrows_counterclockwise:", "Status change"),
        "approval_needed" => (":raised_hand:", "Approval needed"),
        "task_assigned" => (":pushpin:", "Task assigned"),
        _ => (":trophy:", "Milestone reached"),
    }
}

/// The "Mute these DMs" button every DM carries.
fn mute_block(member: &str) -> Value {
    json!({ "type": "actions", "block_id": "dm_preferences", "elements": [
        { "type": "button", "action_id": MUTE_DMS, "value": member, "text": { "type": "plain_text", "text": "Mute these DMs" } }
    ] })
}

/// A notification; `dm_member` adds the mute button.
pub fn notification(n: &NotificationInput, dm_member: Option<&str>) -> Rendered {
    let (emoji, title) = kind_title(&n.kind);
    let campaign = escape(&n.campaign_name);
    let mut blocks = vec![section(&format!(
        "{emoji} *{title}: {campaign}*\n{}",
        escape(&n.message)
    ))];
    if !n.actions.is_empty() {
        let buttons: Vec<Value> = n
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({ "type": "button", "action_id": format!("link_{i}"), "url": a.url,
                "text": { "type": "plain_text", "text": clip(&a.text, 75) } })
            })
            .collect();
        blocks.push(json!({ "type": "actions", "block_id": "links", "elements": buttons }));
    }
    blocks.push(context(&format!("Campaign `{}`", escape(&n.campaign_id))));
    if let Some(member) = dm_member {
        blocks.push(mute_block(member));
    }
    let attachments: Vec<Value> = n
        .attachments
        .iter()
        .map(|a| {
            let mut att = json!({ "fallback": format!("{}: {}", a.title, a.value),
                "fields": [{ "title": a.title, "value": escape(&a.value), "short": a.value.chars().count() <= 40 }] });
            if let Some(color) = &a.color {
                att["color"] = json!(color);
            }
            att
        })
        .collect();
    Rendered {
        text: clip(
            &format!("{title}: {}: {}", n.campaign_name, n.message),
            3000,
        ),
        blocks: Value::Array(blocks),
        attachments: Value::Array(attachments),
    }
}

/// What an approval message says about its approval.
#[derive(Debug, Clone)]
pub struct ApprovalFacts<'a> {
    pub id: &'a str,
    pub stage: &'a str,
    pub campaign: &'a str,
    pub approver: &'a str,
    pub deadline: DateTime<Utc>,
    pub labels: &'a crate::store::approvals::Labels,
}

fn approval_summary(a: &ApprovalFacts<'_>) -> String {
    format!(
        "*Campaign:* {}\n*Stage:* {}\n*Deadline:* {}",
        escape(a.campaign),
        escape(a.stage),
        when(a.deadline)
    )
}

fn approval_buttons(a: &ApprovalFacts<'_>) -> Value {
    json!({ "type": "actions", "block_id": "approval_actions", "elements": [
        { "type": "button", "style": "primary", "action_id": APPROVE, "value": a.id, "text": { "type": "plain_text", "text": clip(&a.labels.approve, 75) } },
        { "type": "button", "style": "danger", "action_id": REJECT, "value": a.id, "text": { "type": "plain_text", "text": clip(&a.labels.reject, 75) } },
        { "type": "button", "action_id": REQUEST_CHANGES, "value": a.id, "text": { "type": "plain_text", "text": clip(&a.labels.request_changes, 75) } }
    ] })
}

/// The approver's interactive DM.
pub fn approval_request(a: &ApprovalFacts<'_>, member: &str) -> Rendered {
    let blocks = vec![
        section(&format!(
            ":raised_hand: *Your approval is needed*\n{}",
            approval_summary(a)
        )),
        approval_buttons(a),
        context(&format!("Approval `{}`", escape(a.id))),
        mute_block(member),
    ];
    Rendered {
        text: format!("Your approval is needed: {} of {}", a.stage, a.campaign),
        blocks: Value::Array(blocks),
        attachments: json!([]),
    }
}

/// The `approval_needed` notice in the campaign channel (decisions reply in its thread).
pub fn approval_notice(a: &ApprovalFacts<'_>) -> Rendered {
    let text = format!(
        ":raised_hand: *Approval needed* from {}\n{}",
        escape(a.approver),
        approval_summary(a)
    );
    Rendered {
        text: format!(
            "Approval needed: {} of {} from {}",
            a.stage, a.campaign, a.approver
        ),
        blocks: json!([
            section(&text),
            context(&format!("Approval `{}`", escape(a.id)))
        ]),
        attachments: json!([]),
    }
}

/// A reminder in the approver's DM thread, with the buttons again.
pub fn approval_reminder(a: &ApprovalFacts<'_>, left: std::time::Duration) -> Rendered {
    let left = human(left);
    Rendered {
        text: format!(
            "Reminder: {} of {} is waiting for you; {left} left",
            a.stage, a.campaign
        ),
        blocks: json!([
            section(&format!(
                ":alarm_clock: *Reminder:* your decision is due in {left}\n{}",
                approval_summary(a)
            )),
            approval_buttons(a)
        ]),
        attachments: json!([]),
    }
}

/// `1 h`, `24 h`, `30 min`.
fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// How an outcome reads.
fn outcome_words(status: &str) -> (&'static str, &'static str) {
    match status {
        "approved" => (":white_check_mark:", "Approved"),
        "rejected" => (":x:", "Rejected"),
        "changes_requested" => (":pencil2:", "Changes requested"),
        _ => (":hourglass:", "Expired"),
    }
}

/// What replaces the approver's buttons once the approval is decided or expired.
pub fn approval_decided(
    a: &ApprovalFacts<'_>,
    status: &str,
    by: Option<&str>,
    at: DateTime<Utc>,
    comment: Option<&str>,
) -> Rendered {
    let (emoji, word) = outcome_words(status);
    let who = by.map(|u| format!(" by <@{u}>")).unwrap_or_default();
    let mut line = format!("{emoji} *{word}*{who} on {}", when(at));
    if let Some(c) = comment {
        line.push_str(&format!("\n> {}", escape(c).replace('\n', "\n> ")));
    }
    Rendered {
        text: format!("{word}: {} of {}", a.stage, a.campaign),
        blocks: json!([
            section(&approval_summary(a)),
            section(&line),
            context(&format!("Approval `{}`", escape(a.id)))
        ]),
        attachments: json!([]),
    }
}

/// The campaign channel's reply in the approval's thread.
pub fn approval_outcome(
    a: &ApprovalFacts<'_>,
    status: &str,
    by: Option<&str>,
    comment: Option<&str>,
) -> Rendered {
    let (emoji, word) = outcome_words(status);
    let who = by
        .map(|u| format!(" by <@{u}>"))
        .unwrap_or_else(|| " (the deadline passed)".to_owned());
    let mut line = format!(
        "{emoji} *{word}*{who}: {} of {}",
        escape(a.stage),
        escape(a.campaign)
    );
    if let Some(c) = comment {
        line.push_str(&format!("\n> {}", escape(c).replace('\n', "\n> ")));
    }
    Rendered {
        text: format!("{word}: {} of {}", a.stage, a.campaign),
        blocks: json!([section(&line)]),
        attachments: json!([]),
    }
}

/// The modal "request changes" opens.
pub fn changes_modal(approval: &str, stage: &str) -> Value {
    json!({
        "type": "modal", "callback_id": CHANGES_MODAL, "private_metadata": approval,
        "title": { "type": "plain_text", "text": "Request changes" },
        "submit": { "type": "plain_text", "text": "Send" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [
            section(&format!("What should change in *{}*?", escape(stage))),
            { "type": "input", "block_id": COMMENT_BLOCK, "label": { "type": "plain_text", "text": "Comment" },
              "element": { "type": "plain_text_input", "action_id": COMMENT_INPUT, "multiline": true, "min_length": 1, "max_length": 3000 } }
        ]
    })
}

/// The pinned card of a campaign's current status.
pub fn status_card(campaign: &str, name: &str, status: &str, at: DateTime<Utc>) -> Rendered {
    Rendered {
        text: format!("{name}: {status}"),
        blocks: json!([
            section(&format!(
                ":bar_chart: *{}* is *{}*",
                escape(name),
                escape(status)
            )),
            context(&format!(
                "Campaign `{}` · updated {}",
                escape(campaign),
                when(at)
            ))
        ]),
        attachments: json!([]),
    }
}

/// The parent of a campaign's task thread.
pub fn task_thread(name: &str) -> Rendered {
    Rendered {
        text: format!("Tasks of {name}"),
        blocks: json!([section(&format!(
            ":thread: *Tasks of {}*: assignments and their discussion go in this thread.",
            escape(name)
        ))]),
        attachments: json!([]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_slack_would_read_as_markup() {
        assert_eq!(
            escape("<!channel> & <@U1>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
    }

    #[test]
    fn clips_to_slack_limits() {
        let long = "x".repeat(80);
        assert_eq!(clip(&long, 75).chars().count(), 75);
        assert_eq!(clip("short", 75), "short");
    }
}
