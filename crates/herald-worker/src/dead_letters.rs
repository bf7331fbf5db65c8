//! The dead-letter drain: the worker role empties the bounded dead-letter
//! queue (`herald.dead`, or the in-process ring) into the database, which is
//! the dead-letter view the API lists and redrives.
//!
//! Each round takes a batch of letters, makes sure each one's delivery says
//! `dead` ([`Outbox::confirm_dead_letters`]: almost always it already does,
//! since an exhausted delivery is recorded dead before its letter is
//! published), then acks the batch. A batch whose check fails is dropped
//! unacked, so its letters go back to the queue for the next round.

use std::sync::Arc;
use std::time::Duration;

use herald_queue::{DeadLetterBatch, Queue, QueueError};
use herald_store::{DeadLetterCheck, DeadLetterKey, DeliveryKey, DeliveryStore, StoreError};
use tokio_util::sync::CancellationToken;

/// How often the drain looks at the dead-letter queue when it found it empty.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(5);
/// Letters taken, checked and acked together.
pub const DRAIN_BATCH: usize = 500;

/// Why a drain round stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("could not take dead letters: {0}")]
    Queue(#[from] QueueError),
    #[error("could not check dead letters against the database: {0}")]
    Store(#[from] StoreError),
}

/// Drains the dead-letter queue into the database.
pub struct DeadLetterDrain {
    store: Arc<dyn DeliveryStore>,
    queue: Arc<dyn Queue>,
    interval: Duration,
}

impl DeadLetterDrain {
    pub fn new(store: Arc<dyn DeliveryStore>, queue: Arc<dyn Queue>) -> Self {
        Self {
            store,
            queue,
            interval: DRAIN_INTERVAL,
        }
    }

    /// Drains every `interval` (at once again while batches come full) until
    /// `shutdown`; a failed round is retried after a capped backoff.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = self.interval;
        loop {
            let pause = match self.drain_once().await {
                Ok(_) => {
                    backoff = self.interval;
                    self.interval
                }
                Err(error) => {
                    tracing::warn!(%error, "dead-letter drain failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Takes batches until the queue is empty; returns what the database said
    /// of the letters drained.
    pub async fn drain_once(&self) -> Result<DeadLetterCheck, DrainError> {
        let mut total = DeadLetterCheck::default();
        loop {
            let batch = self.queue.take_dead_letters(DRAIN_BATCH).await?;
            let taken = batch.letters.len();
            let check = self.settle(batch).await?;
            total.already_dead += check.already_dead;
            total.marked_dead += check.marked_dead;
            total.moved_on += check.moved_on;
            if taken < DRAIN_BATCH {
                return Ok(total);
            }
        }
    }

    /// Checks one batch against the database, then acks it.
    async fn settle(&self, batch: DeadLetterBatch) -> Result<DeadLetterCheck, DrainError> {
        if batch.letters.is_empty() {
            batch.ack().await?;
            return Ok(DeadLetterCheck::default());
        }
        let keys: Vec<DeadLetterKey> = batch
            .letters
            .iter()
            .map(|letter| {
                tracing::debug!(
                    msg_id = %letter.task.msg_id,
                    endpoint_id = %letter.task.endpoint_id,
                    reason = %letter.reason,
                    "draining a dead letter"
                );
                DeadLetterKey {
                    delivery: DeliveryKey {
                        tenant_id: letter.task.tenant_id.clone(),
                        app_id: letter.task.app_id.clone(),
                        msg_id: letter.task.msg_id.clone(),
                        endpoint_id: letter.task.endpoint_id.clone(),
                    },
                    attempt: letter.task.attempt,
                }
            })
            .collect();
        // On an error the batch is dropped unacked: its letters go back.
        let check = self.store.confirm_dead_letters(&keys).await?;
        batch.ack().await?;
        crate::metrics::dead_letters_drained(&check);
        tracing::info!(
            drained = keys.len(),
            already_dead = check.already_dead,
            marked_dead = check.marked_dead,
            moved_on = check.moved_on,
            "dead letters drained into the database"
        );
        Ok(check)
    }
}
