//! The Redis cache of Slack look-ups (channel id by name, user id by email or name). Slack
//! events that change a user or a channel invalidate the entries they make stale.

use redis::aio::ConnectionManager;

/// `<prefix>:slack:channel-by-name:<workspace>:<name>`.
pub fn channel_by_name(prefix: &str, workspace: &str, name: &str) -> String {
    format!(
        "{prefix}:slack:channel-by-name:{workspace}:{}",
        name.trim_start_matches('#')
    )
}

/// `<prefix>:slack:user-by-email:<workspace>:<email, lowercase>`.
pub fn user_by_email(prefix: &str, workspace: &str, email: &str) -> String {
    format!(
        "{prefix}:slack:user-by-email:{workspace}:{}",
        email.to_lowercase()
    )
}

/// `<prefix>:slack:user-by-name:<workspace>:<name>`.
pub fn user_by_name(prefix: &str, workspace: &str, name: &str) -> String {
    format!("{prefix}:slack:user-by-name:{workspace}:{name}")
}

/// Deletes `keys`; counts invalidations in metrics.
pub async fn invalidate(
    conn: &mut ConnectionManager,
    keys: &[String],
) -> Result<(), redis::RedisError> {
    if keys.is_empty() {
        return Ok(());
    }
    let removed: u64 = redis::cmd("DEL").arg(keys).query_async(conn).await?;
    metrics::counter!("slack_cache_invalidations_total").increment(removed);
    Ok(())
}

/// `<prefix>:slack:dm:<workspace>:<user>`: the DM channel with a user.
pub fn dm_channel(prefix: &str, workspace: &str, user: &str) -> String {
    format!("{prefix}:slack:dm:{workspace}:{user}")
}

/// `<prefix>:slack:usergroup:<workspace>:<group>`: a user group's members, comma-separated.
pub fn usergroup(prefix: &str, workspace: &str, group: &str) -> String {
    format!("{prefix}:slack:usergroup:{workspace}:{group}")
}
