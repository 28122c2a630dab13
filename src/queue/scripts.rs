//! The Lua scripts that change a queue atomically. Each touches only keys of one queue
//! (one hash tag) and at most a bounded batch of entries, so none can block Redis for long.

use std::sync::LazyLock;

use redis::Script;

/// Enqueue one task, unless its idempotency key is already held.
/// KEYS: stream, delayed, stats, unique. ARGV: task, id, due_ms, now_ms, has_unique, ttl_ms, job.
/// Returns {1, id} when added, {0, first_id} when the key was held.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[5] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[6])
end
if tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('XADD', KEYS[1], '*', 't', ARGV[1])
end
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
redis.call('HINCRBY', KEYS[3], 'enqueued:' .. ARGV[7], 1)
return {1, ARGV[2]}
"#,
    )
});

/// A task succeeded: acknowledge and delete its entry, count it once.
/// KEYS: stream, stats, timeline (this minute's). ARGV: entry_id, job. Returns 1, or 0 when it
/// was already acknowledged.
pub static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('XACK', KEYS[1], 'workers', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if n == 1 then
  redis.call('HINCRBY', KEYS[2], 'succeeded', 1)
  redis.call('HINCRBY', KEYS[2], 'succeeded:' .. ARGV[2], 1)
  redis.call('HINCRBY', KEYS[3], 'succeeded', 1)
  redis.call('EXPIRE', KEYS[3], 93600)
end
return n
"#,
    )
});

/// A task is to run again later: move it from the stream to the delayed set in one step.
/// KEYS: stream, delayed, stats, timeline. ARGV: entry_id, task, due_ms, job, counter.
pub static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('XACK', KEYS[1], 'workers', ARGV[1])
if n == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
redis.call('HINCRBY', KEYS[3], ARGV[5] .. ':' .. ARGV[4], 1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('EXPIRE', KEYS[4], 93600)
return 1
"#,
    )
});

/// A task is dead: move it to the dead letters with its reason.
/// KEYS: stream, dead, dead_index, stats, timeline. ARGV: entry_id, task_id, record, now_ms, job.
pub static DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('XACK', KEYS[1], 'workers', ARGV[1])
if n == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'dead', 1)
redis.call('HINCRBY', KEYS[4], 'dead:' .. ARGV[5], 1)
redis.call('HINCRBY', KEYS[5], 'dead', 1)
redis.call('EXPIRE', KEYS[5], 93600)
return 1
"#,
    )
});

/// Moves up to ARGV[2] delayed tasks due at ARGV[1] (ms) into the stream.
/// KEYS: delayed, stream. Returns how many moved.
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 't', member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"#,
    )
});

/// Hands tasks back: each entry id in ARGV still pending is re-added as a fresh entry (so any
/// worker can take it at once) and the old one acknowledged and deleted. KEYS: stream.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for _, id in ipairs(ARGV) do
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if #entry == 1 then
    local fields = entry[1][2]
    local task = nil
    for j = 1, #fields, 2 do
      if fields[j] == 't' then task = fields[j + 1] end
    end
    if task and redis.call('XACK', KEYS[1], 'workers', id) == 1 then
      redis.call('XADD', KEYS[1], '*', 't', task)
      redis.call('XDEL', KEYS[1], id)
      n = n + 1
    end
  end
end
return n
"#,
    )
});

/// Re-drives one dead task, if its record is still the one that was read.
/// KEYS: dead, dead_index, stream, stats. ARGV: task_id, expected_record, new_task.
pub static REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('XADD', KEYS[3], '*', 't', ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'redriven', 1)
return 1
"#,
    )
});

/// Removes up to ARGV[1] of the oldest dead tasks. KEYS: dead, dead_index. Returns how many.
pub static PURGE_DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
"#,
    )
});

/// Enqueues a schedule's tick unless that tick (or a later one) was enqueued already.
/// KEYS: schedule, stream, stats. ARGV: tick_ms, task, job. Returns 1 when enqueued.
pub static SCHEDULE_TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 't', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
redis.call('HINCRBY', KEYS[3], 'enqueued:' .. ARGV[3], 1)
return 1
"#,
    )
});
