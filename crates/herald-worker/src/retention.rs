//! The retention job: every worker process runs one, and the one holding
//! the deployment's `retention` lease (`job_lease`) does the work, so
//! several workers never prune the same rows at once and a dead holder's
//! lease lapses after [`RetentionConfig::lease`].
//!
//! A round deletes attempts, deliveries and then messages older than the
//! deployment's retention, then removes the payloads whose `expires_at` has
//! passed (the message stays listable, its payload reported expired), a
//! batch per statement ([`Retention`]), until a batch comes back short.
//! Between batches it pauses at least twice as long as the batch took (so it
//! holds at most a third of one connection's time and concurrent inserts
//! keep their latency), and renews its lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_store::{PrunedBatch, Retention, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics;

const LEASE: &str = "retention";

/// How the retention job runs.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Messages, their deliveries and attempts older than this are deleted;
    /// `None` keeps them (payloads still expire).
    pub retention: Option<Duration>,
    /// Time between rounds.
    pub interval: Duration,
    /// Rows one statement removes at most.
    pub batch: i64,
    /// Shortest pause between two batches of a round; the pause is at least
    /// twice as long as the batch took, so pruning holds at most a third of
    /// one database connection's time and concurrent inserts keep their
    /// latency.
    pub pause: Duration,
    /// How long a taken lease lasts without renewal.
    pub lease: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            interval: Duration::from_secs(60),
            batch: 500,
            pause: Duration::from_millis(10),
            lease: Duration::from_secs(120),
        }
    }
}

/// What one round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub payloads: u64,
    pub attempts: u64,
    pub deliveries: u64,
    pub messages: u64,
}

/// The retention job of one process.
pub struct RetentionJob {
    store: Arc<dyn Retention>,
    config: RetentionConfig,
    /// This process's name in `job_lease`.
    holder: String,
}

impl RetentionJob {
    pub fn new(store: Arc<dyn Retention>, config: RetentionConfig) -> Self {
        Self {
            store,
            config,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
        }
    }

    /// Runs a round every `interval` until `shutdown`, then gives the lease
    /// up so another worker takes over without waiting for it to lapse.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            match self.round().await {
                Ok(Some(pruned)) if pruned != Pruned::default() => {
                    tracing::info!(
                        payloads = pruned.payloads,
                        attempts = pruned.attempts,
                        deliveries = pruned.deliveries,
                        messages = pruned.messages,
                        "retention removed expired data"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention round failed; trying again later"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Err(error) = self.store.release_lease(LEASE, &self.holder).await {
            tracing::debug!(%error, "could not give the retention lease up");
        }
    }

    /// One round: `None` when another process holds the lease.
    pub async fn round(&self) -> Result<Option<Pruned>, StoreError> {
        if !self.renew_lease().await? {
            return Ok(None);
        }
        let mut pruned = Pruned::default();
        let batch = self.config.batch;
        // Rows past the retention first: their payloads need no expiry.
        if let Some(retention) = self.config.retention {
            let before = herald_store::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
            pruned.attempts = self
                .batches("attempt", |store, cursor| async move {
                    store.prune_attempts(before, &cursor, batch).await
                })
                .await?;
            // A message has a delivery per endpoint: a tenth of the batch
            // in messages keeps a statement near a batch of deliveries.
            let messages = (batch / 10).max(1);
            pruned.deliveries = self
                .batches("delivery", |store, cursor| async move {
                    store.prune_deliveries(before, &cursor, messages).await
                })
                .await?;
            pruned.messages = self
                .batches("message", |store, cursor| async move {
                    store.prune_messages(before, &cursor, batch).await
                })
                .await?;
        }
        pruned.payloads = self
            .batches("payload", |store, _| async move {
                let removed = store.expire_payloads(herald_store::now(), batch).await?;
                Ok(PrunedBatch {
                    removed,
                    cursor: String::new(),
                })
            })
            .await?;
        let oldest = self.store.oldest_message().await?;
        metrics::oldest_message(oldest.map(|at| (Utc::now() - at).num_milliseconds() as f64 / 1e3));
        Ok(Some(pruned))
    }

    /// Runs `step` from the start, each batch after the last key the one
    /// before deleted, until one removes nothing (or the lease is lost);
    /// returns the rows removed, counted in `kind`'s series.
    async fn batches<F, Fut>(&self, kind: &'static str, step: F) -> Result<u64, StoreError>
    where
        F: Fn(Arc<dyn Retention>, String) -> Fut,
        Fut: std::future::Future<Output = Result<PrunedBatch, StoreError>>,
    {
        let mut total = 0;
        let mut cursor = String::new();
        loop {
            let started = std::time::Instant::now();
            let batch = step(self.store.clone(), cursor.clone()).await?;
            let removed = batch.removed;
            total += removed;
            metrics::pruned(kind, removed);
            if removed == 0 && batch.cursor == cursor {
                return Ok(total);
            }
            cursor = batch.cursor;
            tokio::time::sleep(self.config.pause.max(started.elapsed() * 2)).await;
            if !self.renew_lease().await? {
                return Ok(total);
            }
        }
    }

    async fn renew_lease(&self) -> Result<bool, StoreError> {
        let now = herald_store::now();
        let until = now + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        self.store.take_lease(LEASE, &self.holder, now, until).await
    }
}
