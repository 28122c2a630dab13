//! The sandbox's world: Mailjet campaigns with statistics, templates, contacts and sent
//! messages; a Slack workspace with users, user groups, channels and messages. Seeded data is
//! a pure function of the seed and the sizes, so two sandboxes with the same seed agree.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

/// Sizes and seed of the generated data.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    /// Seed of the generator.
    pub seed: u64,
    /// Mailjet campaigns (with statistics).
    pub campaigns: usize,
    /// Mailjet templates.
    pub templates: usize,
    /// Slack users (a few are bots, a few deleted).
    pub users: usize,
    /// Slack channels (some named `campaign-<slug>`).
    pub channels: usize,
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec {
            seed: 42,
            campaigns: 50,
            templates: 10,
            users: 100,
            channels: 20,
        }
    }
}

/// A Mailjet campaign and its lifetime counters.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: i64,
    pub subject: String,
    pub status: i64,
    pub created_at: i64,
    pub send_start_at: i64,
    pub custom_value: String,
    pub from_email: String,
    pub stats: StatCounters,
}

/// The `/statcounters` numbers of a campaign (Mailjet's own names; `sent` is MessageSentCount,
/// which is what Mailjet calls delivered).
#[derive(Debug, Clone, Default)]
pub struct StatCounters {
    pub total: i64,
    pub sent: i64,
    pub opened: i64,
    pub clicked: i64,
    pub hard_bounced: i64,
    pub soft_bounced: i64,
    pub spam: i64,
    pub blocked: i64,
    pub unsubscribed: i64,
    pub queued: i64,
    pub deferred: i64,
}

/// A Mailjet template.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub categories: Vec<String>,
    pub purposes: Vec<String>,
    pub html: String,
    pub text: String,
    pub subject: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A Mailjet contact.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub excluded: bool,
    pub created_at: i64,
}

/// A message accepted by Send.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub id: i64,
    pub uuid: String,
    pub email: String,
    pub custom_id: String,
    pub payload: String,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub arrived_at: i64,
}

/// A Slack user.
#[derive(Debug, Clone)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub display_name: String,
    pub email: String,
    pub deleted: bool,
    pub is_bot: bool,
    pub presence: &'static str,
    pub updated: i64,
}

/// A Slack channel.
#[derive(Debug, Clone)]
pub struct SlackChannel {
    pub id: String,
    pub name: String,
    pub purpose: String,
    pub topic: String,
    pub is_private: bool,
    pub is_archived: bool,
    pub created: i64,
    pub creator: String,
    pub members: Vec<String>,
    pub previous_names: Vec<String>,
    /// Last message `ts` issued in this channel (seconds, micros), to keep `ts` unique.
    pub last_ts: (i64, i64),
    /// A direct message with this user (`conversations.open`), not a channel.
    pub im_user: Option<String>,
}

/// A posted Slack message.
#[derive(Debug, Clone)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Value,
    pub reactions: Vec<String>,
    /// The parent's `ts` for a reply in a thread.
    pub thread_ts: Option<String>,
    /// Message metadata (`event_type`, `event_payload`), as posted.
    pub metadata: Value,
    /// Times `chat.update` changed it.
    pub updates: u32,
    /// Legacy attachments (colour bar and fields), as posted or updated.
    pub attachments: Value,
    /// Pinned to its channel (`pins.add`).
    pub pinned: bool,
}

/// The Slack workspace.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    pub team_id: String,
    pub team_name: String,
    pub bot_user_id: String,
    pub users: Vec<SlackUser>,
    pub channels: Vec<SlackChannel>,
    pub messages: HashMap<(String, String), SlackMessage>,
    /// Ephemeral messages posted (`chat.postEphemeral`), in order.
    pub ephemerals: Vec<Value>,
    /// Modals opened (`views.open`), in order.
    pub views: Vec<Value>,
}

/// Everything the sandbox holds.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub campaigns: Vec<Campaign>,
    pub templates: BTreeMap<i64, Template>,
    pub contacts: BTreeMap<i64, Contact>,
    pub contacts_by_email: HashMap<String, i64>,
    pub messages: Vec<SentMessage>,
    pub messages_by_custom_id: HashMap<String, Vec<usize>>,
    pub next_message_id: i64,
    pub workspace: Workspace,
}

const BASE_TIME: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

const WORDS: &[&str] = &[
    "spring",
    "summer",
    "autumn",
    "winter",
    "launch",
    "newsletter",
    "digest",
    "offer",
    "webinar",
    "update",
    "product",
    "partner",
    "loyalty",
    "welcome",
    "renewal",
    "event",
    "survey",
    "holiday",
    "flash",
    "preview",
];
const FIRST: &[&str] = &[
    "ada", "alan", "grace", "linus", "ken", "barbara", "edsger", "margaret", "donald", "frances",
    "john", "radia",
];
const LAST: &[&str] = &[
    "lovelace", "turing", "hopper", "torvalds", "thompson", "liskov", "dijkstra", "hamilton",
    "knuth", "allen", "backus", "perlman",
];

impl World {
    /// The world for `spec`.
    pub fn seeded(spec: &SeedSpec) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let mut world = World {
            next_message_id: 70_650_219_165_027_410,
            ..Default::default()
        };
        for i in 0..spec.campaigns {
            world.campaigns.push(campaign(&mut rng, i));
        }
        for i in 0..spec.templates {
            let t = template(&mut rng, i);
            world.templates.insert(t.id, t);
        }
        world.workspace = workspace(&mut rng, spec);
        world
    }

    /// A campaign by id.
    pub fn campaign(&self, id: i64) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.id == id)
    }

    /// The contact for `email`, created when missing (Send does that too).
    pub fn contact_for(&mut self, email: &str, name: &str) -> i64 {
        let key = email.to_ascii_lowercase();
        if let Some(id) = self.contacts_by_email.get(&key) {
            return *id;
        }
        let id = 1000 + self.contacts.len() as i64 + 1;
        let contact = Contact {
            id,
            email: email.to_owned(),
            name: name.to_owned(),
            excluded: false,
            created_at: now(),
        };
        self.contacts.insert(id, contact);
        self.contacts_by_email.insert(key, id);
        id
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An ISO-8601 time (Mailjet's format) for unix seconds.
pub fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn campaign(rng: &mut fastrand::Rng, i: usize) -> Campaign {
    let subject = format!(
        "{} {} #{}",
        capitalize(pick(rng, WORDS)),
        pick(rng, WORDS),
        i + 1
    );
    let total = rng.i64(100..20_000);
    let blocked = total * rng.i64(0..3) / 100;
    let hard = total * rng.i64(0..3) / 100;
    let soft = total * rng.i64(0..2) / 100;
    let sent = total - blocked - hard - soft;
    let opened = sent * rng.i64(10..60) / 100;
    let clicked = opened * rng.i64(5..40) / 100;
    let created = BASE_TIME + i as i64 * 3600;
    Campaign {
        id: 7_000_000 + i as i64,
        subject,
        status: if rng.u8(..10) == 0 { 0 } else { 2 },
        created_at: created,
        send_start_at: created + 600,
        custom_value: format!("campaign-{}", i + 1),
        from_email: "news@example.com".to_owned(),
        stats: StatCounters {
            total,
            sent,
            opened,
            clicked,
            hard_bounced: hard,
            soft_bounced: soft,
            spam: opened * rng.i64(0..2) / 100,
            blocked,
            unsubscribed: opened * rng.i64(0..4) / 100,
            queued: 0,
            deferred: soft,
        },
    }
}

fn template(rng: &mut fastrand::Rng, i: usize) -> Template {
    let word = pick(rng, WORDS);
    let categories = vec![
        pick(
            rng,
            &["newsletter", "transactional", "promotion", "onboarding"],
        )
        .to_owned(),
    ];
    let html = format!(
        "<html><body><h1>{{{{var:headline:\"{}\"}}}}</h1><p>Hello {{{{var:first_name}}}},</p><p>{{{{var:body:\"News from the team\"}}}}</p><a href=\"{{{{var:cta_url:\"https://example.com\"}}}}\">More</a><p>{{{{data:company:\"our team\"}}}}</p></body></html>",
        capitalize(word)
    );
    let text = "Hello {{var:first_name}}, {{var:body:\"News from the team\"}} {{var:cta_url:\"https://example.com\"}}".to_owned();
    Template {
        id: 4_000_000 + i as i64,
        name: format!("{} template {}", capitalize(word), i + 1),
        categories,
        purposes: vec!["marketing".to_owned()],
        html,
        text,
        subject: format!("{{{{var:subject:\"{} news\"}}}}", capitalize(word)),
        created_at: BASE_TIME + i as i64 * 86_400,
        updated_at: BASE_TIME + i as i64 * 86_400 + 3600,
    }
}

fn workspace(rng: &mut fastrand::Rng, spec: &SeedSpec) -> Workspace {
    let mut users = Vec::with_capacity(spec.users);
    for i in 0..spec.users {
        let first = pick(rng, FIRST);
        let last = pick(rng, LAST);
        let is_bot = i % 50 == 49;
        users.push(SlackUser {
            id: format!("U{:08X}", 0x1000_0000u32 as usize + i),
            name: format!("{first}.{last}{i}"),
            real_name: format!("{} {}", capitalize(first), capitalize(last)),
            display_name: format!("{first}{i}"),
            // Mixed case on purpose: matching by email must ignore case.
            email: if is_bot {
                String::new()
            } else if i % 7 == 0 {
                format!("{}.{}{}@Example.com", capitalize(first), last, i)
            } else {
                format!("{first}.{last}{i}@example.com")
            },
            deleted: i % 40 == 39,
            is_bot,
            presence: if rng.bool() { "active" } else { "away" },
            updated: BASE_TIME + i as i64,
        });
    }
    let member_ids: Vec<String> = users
        .iter()
        .filter(|u| !u.deleted && !u.is_bot)
        .map(|u| u.id.clone())
        .collect();
    let mut channels = Vec::with_capacity(spec.channels);
    for i in 0..spec.channels {
        let name = if i % 2 == 0 {
            format!("campaign-{}", i / 2 + 1)
        } else {
            format!("{}-{}", pick(rng, WORDS), i)
        };
        let count = if member_ids.is_empty() {
            0
        } else {
            rng.usize(1..=member_ids.len().min(40))
        };
        let start = if member_ids.is_empty() {
            0
        } else {
            rng.usize(..member_ids.len())
        };
        let members = (0..count)
            .map(|k| member_ids[(start + k) % member_ids.len()].clone())
            .collect();
        channels.push(SlackChannel {
            id: format!("C{:08X}", 0x2000_0000u32 as usize + i),
            purpose: format!("Coordination for {name}"),
            topic: String::new(),
            name,
            is_private: i % 9 == 8,
            is_archived: i % 11 == 10,
            created: BASE_TIME + i as i64 * 600,
            creator: users.first().map(|u| u.id.clone()).unwrap_or_default(),
            members,
            previous_names: Vec::new(),
            last_ts: (0, 0),
            im_user: None,
        });
    }
    Workspace {
        team_id: "T0SANDBOX1".to_owned(),
        team_name: "Sandbox Workspace".to_owned(),
        bot_user_id: "U0SANDBOT1".to_owned(),
        users,
        channels,
        messages: HashMap::new(),
        ephemerals: Vec::new(),
        views: Vec::new(),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

impl Campaign {
    /// The `/campaign` row.
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id, "CampaignType": 2, "ClickTracked": self.stats.clicked, "CreatedAt": iso(self.created_at),
            "CustomValue": self.custom_value, "FirstMessageID": 0, "FromID": 1, "FromEmail": self.from_email,
            "FromName": "Sandbox News", "HasHtmlCount": 1, "HasTxtCount": 1, "IsDeleted": false, "IsStarred": false,
            "ListID": 0, "NewsLetterID": self.id, "OpenTracked": self.stats.opened, "SegmentationID": 0,
            "SendEndAt": iso(self.send_start_at + 300), "SendStartAt": iso(self.send_start_at), "SpamassScore": 0,
            "Status": self.status, "Subject": self.subject, "UnsubscribeTrackedCount": self.stats.unsubscribed, "WorkflowID": 0,
        })
    }

    /// The `/statcounters` row (CounterSource=Campaign, CounterResolution=Lifetime).
    pub fn statcounters(&self, api_key_id: i64) -> Value {
        let s = &self.stats;
        json!({
            "APIKeyID": api_key_id, "EventClickDelay": 322, "EventClickedCount": s.clicked, "EventOpenDelay": 739,
            "EventOpenedCount": s.opened, "EventSpamCount": s.spam, "EventUnsubscribedCount": s.unsubscribed,
            "EventWorkflowExitedCount": 0, "MessageBlockedCount": s.blocked, "MessageClickedCount": s.clicked,
            "MessageDeferredCount": s.deferred, "MessageHardBouncedCount": s.hard_bounced, "MessageOpenedCount": s.opened,
            "MessageQueuedCount": s.queued, "MessageSentCount": s.sent, "MessageSoftBouncedCount": s.soft_bounced,
            "MessageSpamCount": s.spam, "MessageUnsubscribedCount": s.unsubscribed, "MessageWorkFlowExitedCount": 0,
            "SourceID": self.id, "Timeslice": "", "Total": s.total,
        })
    }
}

impl Template {
    /// The `/template` row.
    pub fn to_json(&self) -> Value {
        json!({
            "Author": "sandbox", "Categories": self.categories, "Copyright": "", "Description": "", "EditMode": 2,
            "ID": self.id, "IsStarred": false, "IsTextPartGenerationEnabled": false, "Locale": "en_US", "Name": self.name,
            "OwnerId": 1, "OwnerType": "apikey", "Presets": "", "Previews": [], "Purposes": self.purposes,
            "CreatedAt": iso(self.created_at), "LastUpdatedAt": iso(self.updated_at),
        })
    }

    /// The `/template/{id}/detailcontent` row.
    pub fn detail_json(&self) -> Value {
        json!({
            "Html-part": self.html, "Text-part": self.text, "MJMLContent": "",
            "Headers": { "From": "\"Sandbox News\" <news@example.com>", "Subject": self.subject, "Reply-to": "" },
        })
    }
}

impl Contact {
    /// The `/contact` row.
    pub fn to_json(&self) -> Value {
        json!({
            "CreatedAt": iso(self.created_at), "DeliveredCount": 0, "Email": self.email, "ExclusionFromCampaignsUpdatedAt": "",
            "ID": self.id, "IsExcludedFromCampaigns": self.excluded, "IsOptInPending": false, "IsSpamComplaining": false,
            "LastActivityAt": "", "LastUpdateAt": iso(self.created_at), "Name": self.name, "UnsubscribedAt": "", "UnsubscribedBy": "",
        })
    }
}

impl SlackUser {
    /// The user object of `users.list` and user events.
    pub fn to_json(&self, team_id: &str) -> Value {
        let mut profile = json!({
            "real_name": self.real_name, "real_name_normalized": self.real_name, "display_name": self.display_name,
            "display_name_normalized": self.display_name, "status_text": "", "status_emoji": "", "avatar_hash": "g0000000",
            "image_24": "https://avatars.example.com/24.png", "image_72": "https://avatars.example.com/72.png", "team": team_id,
        });
        if !self.email.is_empty() {
            profile["email"] = Value::String(self.email.clone());
        }
        if self.is_bot {
            profile["bot_id"] = Value::String(format!("B{}", &self.id[1..]));
        }
        json!({
            "id": self.id, "team_id": team_id, "name": self.name, "deleted": self.deleted, "color": "9f69e7",
            "real_name": self.real_name, "tz": "Europe/Paris", "tz_label": "Central European Time", "tz_offset": 3600,
            "profile": profile, "is_admin": false, "is_owner": false, "is_primary_owner": false, "is_restricted": false,
            "is_ultra_restricted": false, "is_bot": self.is_bot, "is_app_user": false, "updated": self.updated, "has_2fa": false,
        })
    }
}

impl SlackChannel {
    /// The channel object of `conversations.*`.
    pub fn to_json(&self, include_members: bool) -> Value {
        let mut channel = json!({
            // Current Slack: private channels have C ids and say is_channel (G ids are legacy groups).
            "id": self.id, "name": self.name, "name_normalized": self.name, "is_channel": self.id.starts_with('C'),
            "is_group": self.id.starts_with('G'), "is_im": self.im_user.is_some(), "is_mpim": false, "is_private": self.is_private,
            "created": self.created, "creator": self.creator, "is_archived": self.is_archived,
            "is_general": false, "unlinked": 0, "is_shared": false, "is_ext_shared": false, "is_org_shared": false,
            "is_pending_ext_shared": false, "pending_shared": [], "is_member": true,
            "topic": { "value": self.topic, "creator": "", "last_set": 0 },
            "purpose": { "value": self.purpose, "creator": self.creator, "last_set": self.created },
            "previous_names": self.previous_names, "updated": self.created * 1000, "context_team_id": "T0SANDBOX1",
        });
        if include_members {
            channel["num_members"] = json!(self.members.len());
        }
        channel
    }
}
