//! Redis key names of one queue. Every key of a queue carries the same hash tag
//! (`{<prefix>:<queue>}`), so a queue's keys live in one slot and the Lua scripts that touch
//! several of them also run on Redis Cluster. `docs/queue.md` describes the layout.

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    tag: String,
    name: String,
}

/// The consumer group every worker of a queue reads through.
pub const GROUP: &str = "workers";

impl QueueKeys {
    /// Keys of `queue` under `prefix`.
    pub fn new(prefix: &str, queue: &str) -> Self {
        QueueKeys {
            tag: format!("{{{prefix}:{queue}}}"),
            name: queue.to_owned(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stream of ready tasks; a consumer group tracks which are in flight (the PEL).
    pub fn stream(&self) -> String {
        format!("{}:stream", self.tag)
    }

    /// Sorted set of delayed tasks and retries, scored by due time (ms since the epoch).
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.tag)
    }

    /// Hash of dead tasks by id (the task and why it died).
    pub fn dead(&self) -> String {
        format!("{}:dead", self.tag)
    }

    /// Sorted set of dead task ids by the time they died, for listing and purging.
    pub fn dead_index(&self) -> String {
        format!("{}:dead:index", self.tag)
    }

    /// Hash of counters: totals and per job type.
    pub fn stats(&self) -> String {
        format!("{}:stats", self.tag)
    }

    /// Hash of the outcomes (`succeeded`, `retried`, `rescheduled`, `dead`) of the minute holding
    /// `at_ms`, kept 26 hours, for the dashboard's throughput charts.
    pub fn timeline(&self, at_ms: i64) -> String {
        format!("{}:timeline:{}", self.tag, at_ms.div_euclid(60_000))
    }

    /// Set while the queue is paused: no worker takes a task from it (those in flight finish).
    /// Holds who paused it and when, as JSON.
    pub fn paused(&self) -> String {
        format!("{}:paused", self.tag)
    }

    /// Idempotency key of an enqueue; holds the first task's id until it expires.
    pub fn unique(&self, key: &str) -> String {
        format!("{}:unique:{key}", self.tag)
    }

    /// The last tick of a schedule that was enqueued (ms since the epoch).
    pub fn schedule(&self, job: &str) -> String {
        format!("{}:schedule:{job}", self.tag)
    }

    /// Hash of a schedule's last outcome, for `jobs list` and the dashboard.
    pub fn schedule_state(&self, job: &str) -> String {
        format!("{}:schedule-state:{job}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_one_hash_tag() {
        let keys = QueueKeys::new("cs", "default");
        for key in [
            keys.stream(),
            keys.delayed(),
            keys.dead(),
            keys.dead_index(),
            keys.stats(),
            keys.unique("k"),
            keys.schedule("j"),
            keys.schedule_state("j"),
        ] {
            assert!(key.starts_with("{cs:default}:"), "{key}");
        }
    }
}
