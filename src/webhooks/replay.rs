//! Replaying a rejected event: its kept bytes are checked again by today's rules (a fix may
//! have been deployed since) and, if they now make an event, it is stored like a delivery.

use sqlx::PgPool;

use super::intake;
use crate::store::webhook_events::{self, Rejection};

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Stored as a new event (its id), to be processed.
    Stored(i64),
    /// The same event is already stored: nothing new.
    Duplicate,
    /// Still not an event, for this reason.
    StillRejected(String),
    /// Replayed before.
    AlreadyReplayed,
    /// No rejection has this id.
    NotFound,
}

/// Replays rejection `id`.
pub async fn replay(db: &PgPool, id: i64) -> Result<Replayed, sqlx::Error> {
    let Some(rejection) = webhook_events::rejection(db, id).await? else {
        return Ok(Replayed::NotFound);
    };
    if rejection.replayed_at.is_some() {
        return Ok(Replayed::AlreadyReplayed);
    }
    match event_of(&rejection) {
        Err(why) => {
            webhook_events::replay_refused(db, id, &why).await?;
            Ok(Replayed::StillRejected(why))
        }
        Ok(event) => Ok(
            match webhook_events::replay_as_event(db, id, &rejection.source, &event).await? {
                Some(new) => Replayed::Stored(new),
                None => Replayed::Duplicate,
            },
        ),
    }
}

fn event_of(rejection: &Rejection) -> Result<webhook_events::NewEvent, String> {
    let text = std::str::from_utf8(&rejection.raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let event = match rejection.source.as_str() {
        "mailjet" => intake::mailjet_event(text),
        other => Err(format!("events of {other} are not replayed")),
    };
    event.map_err(|why| format!("event {}: {why}", rejection.position))
}
