//! Group commit, written once for every writer that batches: callers submit
//! one item each and wait; a background task writes whatever has gathered as
//! one batch and answers each caller with its own outcome.
//!
//! Batches form by themselves, without a timer: a lone item is written at
//! once, and the items that arrive while batches are being written make up
//! the next one. Up to `in_flight` batches are written at a time, so one slow
//! commit does not stall the others (SQLite's single writer takes them in
//! turn; PostgreSQL commits them side by side). The queue is bounded by its
//! callers, each of which waits for its answer: the API's connections, the
//! worker's attempts in flight.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{StoreError, StoreResult};

type Job<T, O> = (T, oneshot::Sender<O>);

/// A batching writer of `T`s, each answered with an `O`; cloning shares it.
pub struct GroupCommit<T, O> {
    jobs: mpsc::UnboundedSender<Job<T, O>>,
}

impl<T, O> Clone for GroupCommit<T, O> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T: Send + 'static, O: Send + 'static> GroupCommit<T, O> {
    /// Starts the background task. `write` takes a batch of at most
    /// `max_batch` items and returns one outcome per item, in order.
    pub fn start<F, W>(max_batch: usize, in_flight: usize, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + Sync + 'static,
        F: Future<Output = Vec<O>> + Send + 'static,
    {
        let (jobs, received) = mpsc::unbounded_channel();
        tokio::spawn(gather(received, max_batch.max(1), in_flight.max(1), write));
        Self { jobs }
    }

    /// Writes `item` in the next batch; `None` when the writer has stopped
    /// (the runtime is shutting down) or gave no outcome for it.
    pub async fn submit(&self, item: T) -> Option<O> {
        let (reply, outcome) = oneshot::channel();
        self.jobs.send((item, reply)).ok()?;
        outcome.await.ok()
    }
}

fn live<T, O>((_, reply): &Job<T, O>) -> bool {
    !reply.is_closed()
}

async fn gather<T, O, F, W>(
    mut jobs: mpsc::UnboundedReceiver<Job<T, O>>,
    max_batch: usize,
    in_flight: usize,
    write: W,
) where
    T: Send + 'static,
    O: Send + 'static,
    W: Fn(Vec<T>) -> F + Send + Sync + 'static,
    F: Future<Output = Vec<O>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = jobs.recv().await {
        // While every slot is busy, the items arriving wait in the channel
        // and join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // A caller that went away (a client that gave up) is not written for.
        let mut batch: Vec<Job<T, O>> = Some(first).into_iter().filter(live).collect();
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) if live(&job) => batch.push(job),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let (items, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
        let written = write(items);
        tokio::spawn(async move {
            for (reply, outcome) in replies.into_iter().zip(written.await) {
                // A caller that went away just misses its answer.
                let _ = reply.send(outcome);
            }
            drop(slot);
        });
    }
}

/// Runs `run` on the whole batch of `len` items (the range of their
/// indices), one outcome per item. If the batch fails for a reason one item
/// can cause (a constraint, a row the store cannot read) and it holds more
/// than one item, runs it on each item alone, so one bad item (its
/// application deleted meanwhile, say) fails only its caller. If the
/// database is unavailable, every item fails at once with that error: going
/// one by one would only wait for it again, item after item.
pub async fn whole_or_one_by_one<O, F, W>(len: usize, run: W) -> Vec<StoreResult<O>>
where
    W: Fn(std::ops::Range<usize>) -> F,
    F: Future<Output = StoreResult<Vec<O>>>,
    O: Default,
{
    match run(0..len).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) if len == 1 => vec![Err(error)],
        Err(StoreError::Unavailable(error)) => {
            let message = error.to_string();
            let each = || StoreError::Unavailable(sqlx::Error::Protocol(message.clone()));
            (0..len).map(|_| Err(each())).collect()
        }
        Err(error) => {
            tracing::debug!(%error, size = len, "batch failed; running its items one by one");
            let mut outcomes = Vec::with_capacity(len);
            for i in 0..len {
                outcomes.push(
                    run(i..i + 1)
                        .await
                        .map(|one| one.into_iter().next().unwrap_or_default()),
                );
            }
            outcomes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn concurrent_items_share_batches_and_each_gets_its_own_outcome() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let group = GroupCommit::start(8, 1, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                items.into_iter().map(|i| i * 2).collect()
            }
        });
        let calls = (0..40).map(|i| {
            let group = group.clone();
            async move { group.submit(i).await }
        });
        let outcomes = futures::future::join_all(calls).await;
        assert_eq!(outcomes, (0..40).map(|i| Some(i * 2)).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert!(sizes.len() < 40, "items were batched: {sizes:?}");
    }
}
