//! Delayed delivery without broker plugins: a ladder of TTL queues.
//!
//! RabbitMQ has no native "deliver at" without the delayed-message plugin, so
//! [`RabbitQueue`](crate::RabbitQueue) uses one queue per rung of [`RUNGS`]
//! (`{prefix}.delay.1s`, `{prefix}.delay.5s`, … `{prefix}.delay.10h`). Each rung
//! has a fixed message TTL and no consumers; when a message expires the broker
//! dead-letters it back into the work exchange, i.e. into `{prefix}.deliveries`.
//! Because every message on a rung has the same TTL the queue stays in expiry
//! order, so a long delay never waits behind a longer one.
//!
//! A delayed task carries its absolute due time (Unix milliseconds, header
//! [`DUE_HEADER`]). `publish_delayed` puts it on the largest rung not longer
//! than the remaining delay (the 1 s rung when less than a second remains).
//! When a consumer receives a task that is not yet due, it re-publishes it on
//! the rung for the remainder (publisher confirm first, then ack) and does not
//! yield it, so a [`Consumer`](crate::Consumer) only ever sees due tasks. A 7 s
//! delay, for instance, travels 5 s + 1 s + 1 s; the worst case (just under
//! 10 h) takes about 25 hops.
//!
//! Precision: a task is never handed out before its due time (as read from the
//! clocks of the publishing and consuming hosts, so clock skew between hosts
//! shifts it). It is late by less than one second from the last rung (a
//! sub-second remainder rides the 1 s rung), plus a few milliseconds of broker
//! work per hop, plus however long each hop waits behind a backlog in
//! `{prefix}.deliveries`. Retry schedules are in seconds with ±20% jitter, so
//! this is plenty.
//!
//! [`MemoryQueue`](crate::MemoryQueue) keeps an exact due instant instead and
//! needs none of this.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header holding a delayed task's due time in Unix milliseconds (`i64`).
pub const DUE_HEADER: &str = "x-herald-due-ms";

/// The delay ladder's TTLs, shortest first.
pub const RUNGS: [Duration; 10] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(5 * 60 * 60),
    Duration::from_secs(10 * 60 * 60),
];

/// The rung a task with `remaining` delay goes on: the largest rung not longer
/// than `remaining`, or the shortest one when `remaining` is below it.
pub fn rung_for(remaining: Duration) -> Duration {
    RUNGS
        .iter()
        .rev()
        .find(|rung| **rung <= remaining)
        .copied()
        .unwrap_or(RUNGS[0])
}

/// Short label of a rung used in queue names and routing keys: `1s`, `2m`, `10h`.
pub fn rung_label(rung: Duration) -> String {
    let secs = rung.as_secs();
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Milliseconds since the Unix epoch on this host's clock.
pub(crate) fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is broken; treating everything as due is the safe side.
        Err(_) => 0,
    }
}

/// The due time of a task delayed by `delay` from now, in Unix milliseconds.
pub(crate) fn due_unix_ms(delay: Duration) -> i64 {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    now_unix_ms().saturating_add(delay_ms)
}

/// How long until `due_ms`, or `None` when it is due.
pub(crate) fn remaining_until(due_ms: i64) -> Option<Duration> {
    let remaining = due_ms.saturating_sub(now_unix_ms());
    u64::try_from(remaining)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rung_for_picks_the_largest_rung_not_longer_than_the_delay() {
        assert_eq!(rung_for(Duration::from_millis(10)), Duration::from_secs(1));
        assert_eq!(
            rung_for(Duration::from_millis(1999)),
            Duration::from_secs(1)
        );
        assert_eq!(rung_for(Duration::from_secs(7)), Duration::from_secs(5));
        assert_eq!(rung_for(Duration::from_secs(300)), Duration::from_secs(120));
        assert_eq!(
            rung_for(Duration::from_secs(100 * 3600)),
            Duration::from_secs(36000)
        );
    }

    #[test]
    fn rung_labels_are_short_and_unique() {
        let labels: Vec<String> = RUNGS.iter().map(|r| rung_label(*r)).collect();
        assert_eq!(
            labels,
            ["1s", "5s", "30s", "2m", "10m", "30m", "1h", "2h", "5h", "10h"]
        );
    }

    #[test]
    fn walking_the_ladder_never_overshoots_before_the_last_rung() {
        // Every delay decomposes into rungs whose sum is at least the delay and
        // exceeds it by less than the shortest rung.
        for secs in [1u64, 2, 7, 59, 61, 3599, 35999, 36001, 100_000] {
            let target = Duration::from_secs(secs) + Duration::from_millis(300);
            let mut travelled = Duration::ZERO;
            let mut hops = 0;
            while travelled < target {
                travelled += rung_for(target - travelled);
                hops += 1;
            }
            assert!(travelled - target < RUNGS[0], "delay {target:?}");
            assert!(hops <= 40, "delay {target:?} took {hops} hops");
        }
    }

    #[test]
    fn remaining_until_is_none_once_due() {
        assert_eq!(remaining_until(now_unix_ms() - 5), None);
        assert!(remaining_until(due_unix_ms(Duration::from_secs(60))).is_some());
    }
}
