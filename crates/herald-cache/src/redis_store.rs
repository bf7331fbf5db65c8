//! Idempotency records in Redis, shared by every API process.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::{decode, encode, CacheError, Claim, Entry, IdempotencyStore, StoredResponse};

/// How long one Redis command may take before the cache counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RedisIdempotency {
    connection: ConnectionManager,
    prefix: String,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

/// A connection to `url` that reconnects by itself, each command bounded by
/// `COMMAND_TIMEOUT`.
pub(crate) async fn connect(url: &str) -> Result<ConnectionManager, CacheError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT)
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(unavailable)
}

impl RedisIdempotency {
    /// Connects to `url`; every key is stored under `prefix` (e.g. `herald:`), so
    /// several deployments or test runs can share one Redis.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        Ok(Self {
            connection: connect(url).await?,
            prefix: format!("{prefix}idempotency:"),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotency {
    async fn claim(&self, key: &str, lock_ttl: Duration) -> Result<Claim, CacheError> {
        let key = self.key(key);
        let mut connection = self.connection.clone();
        // SET NX PX makes the claim atomic: exactly one concurrent caller wins.
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(millis(lock_ttl)));
        let won: Option<String> = connection
            .set_options(&key, encode(&Entry::Started), options)
            .await
            .map_err(unavailable)?;
        if won.is_some() {
            return Ok(Claim::Acquired);
        }
        let existing: Option<String> = connection.get(&key).await.map_err(unavailable)?;
        match existing {
            Some(raw) => decode(&raw),
            // Expired between the two commands: report busy, the caller retries.
            None => Ok(Claim::InProgress),
        }
    }

    async fn complete(
        &self,
        key: &str,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let _: () = connection
            .pset_ex(
                self.key(key),
                encode(&Entry::Completed(response.clone())),
                millis(ttl),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let _: () = connection.del(self.key(key)).await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contract;

    /// Connects to the local Redis, or skips (fails under `HERALD_REQUIRE_SERVICES=1`).
    async fn redis() -> Option<RedisIdempotency> {
        test_redis(|url, prefix| async move { RedisIdempotency::connect(&url, &prefix).await })
            .await
    }

    /// Connects with `connect` to the local Redis under a fresh prefix, or
    /// skips (fails under `HERALD_REQUIRE_SERVICES=1`).
    pub(crate) async fn test_redis<T, F, Fut>(connect: F) -> Option<T>
    where
        F: FnOnce(String, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, CacheError>>,
    {
        let url = std::env::var("HERALD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("herald-test-{}:", uuid::Uuid::new_v4());
        match tokio::time::timeout(Duration::from_secs(5), connect(url.clone(), prefix)).await {
            Ok(Ok(store)) => Some(store),
            Ok(Err(e)) => skip(&url, &e.to_string()),
            Err(_) => skip(&url, "timed out"),
        }
    }

    fn skip<T>(url: &str, why: &str) -> Option<T> {
        if std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("Redis at {url} is required (HERALD_REQUIRE_SERVICES=1): {why}");
        }
        // Straight to stderr: libtest hides `eprintln!` output of passing tests.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "*** SKIPPED: Redis at {url} is not reachable ({why}) ***"
        );
        None
    }

    #[tokio::test]
    async fn redis_claims_are_exclusive_until_completed() {
        if let Some(store) = redis().await {
            contract::claims_are_exclusive_until_completed(&store, "k").await;
        }
    }

    #[tokio::test]
    async fn redis_released_keys_can_be_claimed_again() {
        if let Some(store) = redis().await {
            contract::released_keys_can_be_claimed_again(&store, "k").await;
        }
    }

    #[tokio::test]
    async fn redis_lapsed_claims_can_be_taken_over() {
        if let Some(store) = redis().await {
            contract::lapsed_claims_can_be_taken_over(&store, "k").await;
        }
    }
}
