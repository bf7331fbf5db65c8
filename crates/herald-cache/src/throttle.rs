//! Endpoint throttling (`throttleRate`): at most `rate` deliveries a second
//! to one endpoint, however many worker processes send to it.
//!
//! The limiter is GCRA (the generic cell rate algorithm) in its reservation
//! form: each key keeps one number, the theoretical arrival time (TAT) of the
//! next delivery. A caller reserves the slot at `max(TAT, now)` and moves TAT
//! one emission interval (`1 / rate`) on; it then waits until its slot and
//! sends. Deliveries are so spaced exactly `1 / rate` apart with no burst,
//! and a slot further away than the caller will wait is not reserved: the
//! caller is told when to come back instead. It is written here because it is
//! a dozen lines (one Lua script on Redis), while the rate-limiting crates
//! either keep their state in process memory only (`governor`) or answer
//! allow/deny without reserving a slot to wait for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::redis_store::{connect, unavailable};
use crate::CacheError;

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is reserved `after` from now: wait that long, then send.
    Granted { after: Duration },
    /// The next free slot is `after` from now, further than the caller would
    /// wait: nothing was reserved.
    Full { after: Duration },
}

/// A limiter of deliveries per second per key.
#[async_trait]
pub trait Throttle: Send + Sync + 'static {
    /// Reserves the next slot of `key` at `rate` per second, if it is at
    /// most `max_wait` away.
    async fn reserve(
        &self,
        key: &str,
        rate: u16,
        max_wait: Duration,
    ) -> Result<Reservation, CacheError>;
}

fn interval(rate: u16) -> Duration {
    Duration::from_secs(1) / u32::from(rate.max(1))
}

/// The limiter of a single process (embedded mode).
#[derive(Default)]
pub struct MemoryThrottle {
    /// Each key's theoretical arrival time; a key whose TAT has passed holds
    /// nothing and is swept.
    tats: Mutex<HashMap<String, Instant>>,
}

impl MemoryThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    fn reserve_now(&self, key: &str, rate: u16, max_wait: Duration) -> Reservation {
        let now = Instant::now();
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if tats.len() > 10_000 {
            tats.retain(|_, tat| *tat > now);
        }
        let start = tats.get(key).copied().unwrap_or(now).max(now);
        let after = start - now;
        if after > max_wait {
            return Reservation::Full { after };
        }
        tats.insert(key.to_owned(), start + interval(rate));
        Reservation::Granted { after }
    }
}

#[async_trait]
impl Throttle for MemoryThrottle {
    async fn reserve(
        &self,
        key: &str,
        rate: u16,
        max_wait: Duration,
    ) -> Result<Reservation, CacheError> {
        Ok(self.reserve_now(key, rate, max_wait))
    }
}

/// The reservation on Redis, atomic as a script, on Redis's own clock so the
/// workers' clocks do not matter. Times in microseconds. Returns
/// `{granted (1/0), microseconds until the slot}`.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local wait = start - now
if wait > max_wait then
  return {0, wait}
end
local next_tat = start + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return {1, wait}
";

/// The limiter shared by every worker process through Redis.
#[derive(Clone)]
pub struct RedisThrottle {
    connection: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl RedisThrottle {
    /// Connects to `url`; keys live under `{prefix}throttle:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        Ok(Self {
            connection: connect(url).await?,
            prefix: format!("{prefix}throttle:"),
            script: redis::Script::new(RESERVE),
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Throttle for RedisThrottle {
    async fn reserve(
        &self,
        key: &str,
        rate: u16,
        max_wait: Duration,
    ) -> Result<Reservation, CacheError> {
        let mut connection = self.connection.clone();
        let (granted, wait): (i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(micros(interval(rate)))
            .arg(micros(max_wait))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let after = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        Ok(if granted == 1 {
            Reservation::Granted { after }
        } else {
            Reservation::Full { after }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reservations at `rate` are spaced `1 / rate` apart from the first,
    /// which is immediate; past `max_wait` nothing is reserved.
    async fn slots_are_spaced_and_bounded(throttle: &dyn Throttle) {
        let max_wait = Duration::from_millis(450);
        let mut afters = Vec::new();
        loop {
            match throttle.reserve("ep", 10, max_wait).await.unwrap() {
                Reservation::Granted { after } => afters.push(after),
                Reservation::Full { after } => {
                    assert!(after > max_wait, "{after:?}");
                    break;
                }
            }
            assert!(afters.len() <= 10, "{afters:?}");
        }
        // 0, 100, 200, 300, 400 ms (less the time the calls took).
        assert_eq!(afters.len(), 5, "{afters:?}");
        for (i, after) in afters.iter().enumerate() {
            let expected = Duration::from_millis(100) * u32::try_from(i).unwrap();
            assert!(
                *after <= expected && expected - *after < Duration::from_millis(50),
                "slot {i}: {afters:?}"
            );
        }
        // Another key is not affected.
        assert_eq!(
            throttle.reserve("other", 10, max_wait).await.unwrap(),
            Reservation::Granted {
                after: Duration::ZERO
            }
        );
        // Slots free up as time passes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(
            throttle.reserve("ep", 10, max_wait).await.unwrap(),
            Reservation::Granted { .. }
        ));
    }

    #[tokio::test]
    async fn memory_slots_are_spaced_and_bounded() {
        slots_are_spaced_and_bounded(&MemoryThrottle::new()).await;
    }

    #[tokio::test]
    async fn redis_slots_are_spaced_and_bounded() {
        let throttle = crate::redis_store::tests::test_redis(|url, prefix| async move {
            RedisThrottle::connect(&url, &prefix).await
        })
        .await;
        if let Some(throttle) = throttle {
            slots_are_spaced_and_bounded(&throttle).await;
        }
    }

    /// Two processes' limiters on one Redis share the key's slots.
    #[tokio::test]
    async fn redis_slots_are_shared_between_connections() {
        let prefix = format!("herald-test-{}:", uuid::Uuid::new_v4());
        let open = |prefix: String| async move {
            crate::redis_store::tests::test_redis(|url, _| async move {
                RedisThrottle::connect(&url, &prefix).await
            })
            .await
        };
        let (Some(a), Some(b)) = (open(prefix.clone()).await, open(prefix).await) else {
            return;
        };
        let max_wait = Duration::from_secs(5);
        let mut afters = Vec::new();
        for i in 0..6 {
            let throttle = if i % 2 == 0 { &a } else { &b };
            match throttle.reserve("ep", 5, max_wait).await.unwrap() {
                Reservation::Granted { after } => afters.push(after),
                full => panic!("{full:?}"),
            }
        }
        let last = afters[5];
        assert!(
            last > Duration::from_millis(950) && last <= Duration::from_secs(1),
            "the sixth slot at 5/s is 1 s away: {afters:?}"
        );
    }
}
