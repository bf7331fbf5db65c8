//! Short-lived shared state that does not belong in the database: idempotency
//! records and endpoint throttling. Two implementations with
//! one contract: Redis for several processes, memory for a single one.

mod memory;
mod redis_store;
pub mod throttle;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryIdempotency;
pub use redis_store::RedisIdempotency;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
}

/// A response worth replaying to a retried request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// What a caller learns when it claims an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the key: run the request, then `complete` or `release`.
    Acquired,
    /// Another request with the same key is running.
    InProgress,
    /// A request with this key already finished; replay its response.
    Completed(StoredResponse),
}

/// The state behind a key, as serialized into the backend.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Entry {
    Started,
    Completed(StoredResponse),
}

/// Idempotency records: at most one request per key runs, and a completed one's
/// response is kept for later duplicates.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for `lock_ttl` (after which a crashed owner's claim lapses).
    async fn claim(&self, key: &str, lock_ttl: Duration) -> Result<Claim, CacheError>;
    /// Stores the owner's response for `ttl`.
    async fn complete(
        &self,
        key: &str,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Gives the key up without a response, so a retry may run.
    async fn release(&self, key: &str) -> Result<(), CacheError>;
}

fn encode(entry: &Entry) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(entry).unwrap_or_default()
}

fn decode(raw: &str) -> Result<Claim, CacheError> {
    match serde_json::from_str::<Entry>(raw) {
        Ok(Entry::Started) => Ok(Claim::InProgress),
        Ok(Entry::Completed(response)) => Ok(Claim::Completed(response)),
        Err(e) => Err(CacheError::Corrupt(e.to_string())),
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every implementation must show; run against each backend.
    use super::*;

    pub async fn claims_are_exclusive_until_completed(store: &dyn IdempotencyStore, key: &str) {
        let lock = Duration::from_secs(10);
        assert_eq!(store.claim(key, lock).await.unwrap(), Claim::Acquired);
        assert_eq!(store.claim(key, lock).await.unwrap(), Claim::InProgress);
        let response = StoredResponse {
            status: 201,
            content_type: Some("application/json".into()),
            body: "{\"id\":\"app_1\"}".into(),
        };
        store
            .complete(key, &response, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.claim(key, lock).await.unwrap(),
            Claim::Completed(response)
        );
    }

    pub async fn released_keys_can_be_claimed_again(store: &dyn IdempotencyStore, key: &str) {
        let lock = Duration::from_secs(10);
        assert_eq!(store.claim(key, lock).await.unwrap(), Claim::Acquired);
        store.release(key).await.unwrap();
        assert_eq!(store.claim(key, lock).await.unwrap(), Claim::Acquired);
    }

    pub async fn lapsed_claims_can_be_taken_over(store: &dyn IdempotencyStore, key: &str) {
        assert_eq!(
            store.claim(key, Duration::from_millis(50)).await.unwrap(),
            Claim::Acquired
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            store.claim(key, Duration::from_secs(10)).await.unwrap(),
            Claim::Acquired
        );
    }
}
