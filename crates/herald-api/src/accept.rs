//! Group commit on accept. The `POST …/msg` calls of this process hand their
//! message to one [`Accepter`], which writes whatever has gathered in one
//! transaction (`Outbox::insert_messages`) and, with a hand-off queue,
//! publishes the deliveries of the whole batch with one confirm; each call is
//! answered once its batch is committed (and published).
//!
//! Batches form by themselves, without a timer: a lone request is written at
//! once, and the requests that arrive while a batch is being written make up
//! the next one. Up to [`BATCHES_IN_FLIGHT`] batches are written at a time,
//! so one slow commit does not stall the process (SQLite's single writer
//! takes them in turn; PostgreSQL commits them side by side).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use herald_queue::{DeliveryTask, Queue};
use herald_store::{NewMessage, Store, StoreError};

/// The most messages one transaction stores.
const MAX_BATCH: usize = 256;

/// Batches being written at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// How long the publish of a batch's deliveries may take before they are
/// left to the relay.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(1);

/// What a call learns of its message: stored, or refused because its
/// `eventId` is taken (`Ok(false)`), or the store's error.
type Outcome = Result<bool, StoreError>;

struct Job {
    new: NewMessage,
    reply: oneshot::Sender<Outcome>,
}

/// The process's accept batcher; cloning shares it.
#[derive(Clone)]
pub struct Accepter {
    jobs: mpsc::UnboundedSender<Job>,
    /// Whether deliveries are handed to a queue (then stored claimed).
    hands_off: bool,
}

impl Accepter {
    /// Starts the batcher on `store`. With `handoff`, new deliveries are
    /// stored claimed and published there at once; without, they are stored
    /// pending and the worker's relay hands them out.
    pub fn start(store: Arc<dyn Store>, handoff: Option<Arc<dyn Queue>>) -> Self {
        let (jobs, received) = mpsc::unbounded_channel();
        let hands_off = handoff.is_some();
        tokio::spawn(gather(received, store, handoff));
        Self { jobs, hands_off }
    }

    /// Whether this process hands deliveries to the workers' queue itself.
    pub fn hands_off(&self) -> bool {
        self.hands_off
    }

    /// Stores `new` in the next batch; `Ok(false)` when its `eventId` is
    /// taken in its application.
    pub async fn accept(&self, new: NewMessage) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let gone = || StoreError::Corrupt("the accept batcher stopped".to_owned());
        self.jobs.send(Job { new, reply }).map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

/// Takes jobs as they come and writes them in batches, each in a task of its
/// own, at most [`BATCHES_IN_FLIGHT`] at once; the jobs that arrive while
/// every batch slot is busy form the next batch.
async fn gather(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    store: Arc<dyn Store>,
    handoff: Option<Arc<dyn Queue>>,
) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (store, handoff) = (store.clone(), handoff.clone());
        tokio::spawn(async move {
            write(store.as_ref(), handoff.as_deref(), batch).await;
            drop(slot);
        });
    }
}

/// Writes one batch and answers its calls.
async fn write(store: &dyn Store, handoff: Option<&dyn Queue>, batch: Vec<Job>) {
    let (news, replies): (Vec<NewMessage>, Vec<_>) =
        batch.into_iter().map(|job| (job.new, job.reply)).unzip();
    crate::metrics::accept_batch(news.len());
    let outcomes: Vec<Outcome> = match store.insert_messages(&news, handoff.is_some()).await {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        // One message can fail a batch (its application deleted meanwhile,
        // say): each is written alone, so each call gets its own answer.
        Err(error) if news.len() > 1 => {
            tracing::debug!(%error, size = news.len(), "accept batch failed; writing its messages one by one");
            let mut outcomes = Vec::with_capacity(news.len());
            for new in &news {
                let alone = store.insert_messages(std::slice::from_ref(new), handoff.is_some());
                outcomes.push(alone.await.map(|stored| stored.first() == Some(&true)));
            }
            outcomes
        }
        Err(error) => vec![Err(error)],
    };
    if let Some(queue) = handoff {
        let stored = news
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Ok(true)))
            .map(|(new, _)| new);
        hand_off(store, queue, stored.collect()).await;
    }
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that went away (timed out) just misses its answer.
        let _ = reply.send(outcome);
    }
}

/// Publishes the delivery tasks of messages just stored with claimed
/// deliveries, with one confirm. The messages are accepted whatever happens
/// here: if the publish fails their deliveries go back to the relay, and if
/// even that fails the relay takes them back once their lease has passed.
async fn hand_off(store: &dyn Store, queue: &dyn Queue, stored: Vec<&NewMessage>) {
    let tasks: Vec<DeliveryTask> = stored
        .iter()
        .flat_map(|new| {
            new.endpoint_ids.iter().map(|endpoint_id| DeliveryTask {
                tenant_id: new.tenant_id.to_string(),
                app_id: new.message.app_id.to_string(),
                msg_id: new.message.id.to_string(),
                endpoint_id: endpoint_id.to_string(),
                attempt: 1,
                manual: false,
                record_failures: 0,
            })
        })
        .collect();
    if tasks.is_empty() {
        return;
    }
    let error = match tokio::time::timeout(HANDOFF_TIMEOUT, queue.publish_many(&tasks)).await {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no confirm within {HANDOFF_TIMEOUT:?}"),
    };
    tracing::warn!(%error, messages = stored.len(), "could not queue the deliveries; the relay will");
    for new in stored {
        let msg_id = &new.message.id;
        if let Err(error) = store.return_deliveries(&new.tenant_id, msg_id).await {
            tracing::warn!(%error, %msg_id, "could not return the deliveries to the relay; they are handed out after the lease");
        }
    }
}
