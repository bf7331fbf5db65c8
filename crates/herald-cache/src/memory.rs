//! In-process idempotency records, for a single Herald process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{decode, encode, CacheError, Claim, Entry, IdempotencyStore, StoredResponse};

/// Sweep expired entries once this many writes have happened since the last sweep.
const SWEEP_EVERY: usize = 1024;

#[derive(Default)]
pub struct MemoryIdempotency {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (String, Instant)>,
    writes_since_sweep: usize,
}

impl Inner {
    fn put(&mut self, key: &str, value: String, ttl: Duration) {
        let now = Instant::now();
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.entries.retain(|_, (_, expires)| *expires > now);
            self.writes_since_sweep = 0;
        }
        self.entries.insert(key.to_owned(), (value, now + ttl));
    }
}

impl MemoryIdempotency {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(&self, key: &str, lock_ttl: Duration) -> Result<Claim, CacheError> {
        let mut inner = self.lock();
        if let Some((raw, expires)) = inner.entries.get(key) {
            if *expires > Instant::now() {
                return decode(raw);
            }
        }
        inner.put(key, encode(&Entry::Started), lock_ttl);
        Ok(Claim::Acquired)
    }

    async fn complete(
        &self,
        key: &str,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.lock()
            .put(key, encode(&Entry::Completed(response.clone())), ttl);
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CacheError> {
        self.lock().entries.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;

    #[tokio::test]
    async fn memory_claims_are_exclusive_until_completed() {
        contract::claims_are_exclusive_until_completed(&MemoryIdempotency::new(), "k").await;
    }

    #[tokio::test]
    async fn memory_released_keys_can_be_claimed_again() {
        contract::released_keys_can_be_claimed_again(&MemoryIdempotency::new(), "k").await;
    }

    #[tokio::test]
    async fn memory_lapsed_claims_can_be_taken_over() {
        contract::lapsed_claims_can_be_taken_over(&MemoryIdempotency::new(), "k").await;
    }
}
