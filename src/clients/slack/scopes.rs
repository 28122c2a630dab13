//! What the app asks Slack for when it is installed.

/// The bot scopes the service asks for when it is installed, and needs: posting and updating
/// messages (`chat:write`), reading channel history for delivery checks (`channels:history`),
/// creating, renaming and archiving campaign channels (`channels:manage`, `channels:read`,
/// `groups:read`), DMs (`im:write`), pins, reactions, people and groups (with e-mail, to match
/// team members), and the `/campaign-sync` command.
pub const SCOPES: [&str; 13] = [
    "channels:history",
    "channels:manage",
    "channels:read",
    "chat:write",
    "commands",
    "groups:read",
    "im:write",
    "pins:write",
    "reactions:write",
    "usergroups:read",
    "users:read",
    "users:read.email",
    "team:read",
];
