//! Helpers shared by some test files (each `tests/*.rs` file is its own crate,
//! so each includes this with `mod common;` and uses what it needs).

#![allow(dead_code)]

use std::time::Duration;

use herald_e2e::Herald;

/// A connection to the server's own database.
pub async fn db(herald: &Herald) -> sqlx::AnyConnection {
    herald.db().await
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
