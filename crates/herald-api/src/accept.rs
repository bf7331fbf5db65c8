//! Group commit on accept. The `POST …/msg` calls of this process hand their
//! message to one [`Accepter`], which writes whatever has gathered in one
//! transaction (`Outbox::insert_messages`) and, with a hand-off queue,
//! publishes the deliveries of the whole batch with one confirm; each call is
//! answered once its batch is committed (and published).
//!
//! Batches form as `herald_store::group` forms them: without a timer, from
//! what arrives while earlier batches are written.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, TenantId};
use herald_queue::{DeliveryTask, MessageContent, Queue};
use herald_store::group::{whole_or_one_by_one, GroupCommit};
use herald_store::{Application, Endpoint, NewMessage, Store, StoreError, StoreResult};
use serde_json::value::RawValue;

/// The most messages one transaction stores.
const MAX_BATCH: usize = 256;

/// Batches being written at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// The largest payload a task carries to the worker; a larger one is read
/// from the database for its attempt, so a broker message stays small.
const MAX_CARRIED_PAYLOAD: usize = 64 * 1024;

/// How long the publish of a batch's deliveries may take before they are
/// left to the relay.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(1);

/// What a call learns of its message: stored, or refused because its
/// `eventId` is taken (`Ok(false)`), or the store's error.
type Outcome = Result<bool, StoreError>;

/// What a stored message's tasks carry besides its row: the payload as
/// stored, and the versions of its endpoints.
type Carried = (Box<RawValue>, Vec<DateTime<Utc>>);

/// An application with its enabled endpoints, or `None` when absent.
type Candidates = StoreResult<Option<(Application, Vec<Endpoint>)>>;

/// A message to accept, with what its deliveries' tasks carry to the worker.
pub struct Accepted {
    pub new: NewMessage,
    /// The payload as stored, or the JSON value of it (see `hand_off`).
    pub payload: Box<RawValue>,
    /// The `updated_at` of each of `new.endpoint_ids`, as read for the fan-out.
    pub endpoint_versions: Vec<DateTime<Utc>>,
}

/// The process's accept batcher; cloning shares it.
#[derive(Clone)]
pub struct Accepter {
    group: GroupCommit<Accepted, Outcome>,
    /// Reads the fan-out candidates of the messages arriving together.
    candidates: GroupCommit<(TenantId, ApplicationId), Candidates>,
}

impl Accepter {
    /// Starts the batcher on `store`. With `handoff`, new deliveries are
    /// stored claimed and published there at once; without, they are stored
    /// pending and the worker's relay hands them out.
    pub fn start(store: Arc<dyn Store>, handoff: Option<Arc<dyn Queue>>) -> Self {
        let reader = store.clone();
        let candidates = GroupCommit::start(MAX_BATCH, BATCHES_IN_FLIGHT, move |keys| {
            let store = reader.clone();
            async move {
                let keys = &keys;
                whole_or_one_by_one(keys.len(), |range| store.fan_out_candidates(&keys[range]))
                    .await
            }
        });
        let group = GroupCommit::start(MAX_BATCH, BATCHES_IN_FLIGHT, move |batch| {
            let (store, handoff) = (store.clone(), handoff.clone());
            async move { write(store.as_ref(), handoff.as_deref(), batch).await }
        });
        Self { group, candidates }
    }

    /// The application `app_id` of `tenant_id` with its enabled endpoints,
    /// read together with those of the other messages arriving meanwhile.
    pub async fn candidates(&self, tenant_id: &TenantId, app_id: &ApplicationId) -> Candidates {
        let key = (tenant_id.clone(), app_id.clone());
        self.candidates
            .submit(key)
            .await
            .unwrap_or_else(|| Err(StoreError::Corrupt("the accept batcher stopped".to_owned())))
    }

    /// Stores the message in the next batch; `Ok(false)` when its `eventId`
    /// is taken in its application.
    pub async fn accept(&self, accepted: Accepted) -> Outcome {
        self.group
            .submit(accepted)
            .await
            .unwrap_or_else(|| Err(StoreError::Corrupt("the accept batcher stopped".to_owned())))
    }
}

/// Writes one batch; one outcome per message.
async fn write(
    store: &dyn Store,
    handoff: Option<&dyn Queue>,
    batch: Vec<Accepted>,
) -> Vec<Outcome> {
    crate::metrics::accept_batch(batch.len());
    let (news, carried): (Vec<NewMessage>, Vec<Carried>) = batch
        .into_iter()
        .map(|a| (a.new, (a.payload, a.endpoint_versions)))
        .unzip();
    let claimed = handoff.is_some();
    let news_ref = &news;
    let outcomes: Vec<Outcome> = whole_or_one_by_one(news.len(), |range| async move {
        let alone = range.len() == 1;
        match store.insert_messages(&news_ref[range], claimed).await {
            // Run again alone after a batch whose commit went unconfirmed
            // (the connection dropped): the row with this message's own id
            // is this message, stored.
            Err(e) if alone && e.is_conflict_on("message_pkey") => Ok(vec![true]),
            written => written,
        }
    })
    .await;
    if let Some(queue) = handoff {
        let stored = news
            .iter()
            .zip(carried)
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, Ok(true)))
            .map(|(stored, _)| stored);
        hand_off(store, queue, stored.collect()).await;
    }
    outcomes
}

/// Publishes the delivery tasks of messages just stored with claimed
/// deliveries: one broker message for the batch, one confirm. Each task
/// carries its message's content, so the worker does not read it back. The
/// messages are accepted whatever happens here: if the publish fails their
/// deliveries go back to the relay, and if even that fails the relay takes
/// them back once their lease has passed.
async fn hand_off(store: &dyn Store, queue: &dyn Queue, stored: Vec<(&NewMessage, Carried)>) {
    let mut tasks = Vec::new();
    let mut handed = Vec::with_capacity(stored.len());
    for (new, (payload, versions)) in stored {
        handed.push(new);
        let message = &new.message;
        // A payload stored with whitespace around its JSON (an inbound body
        // kept byte for byte) is not what the raw value holds: the worker
        // reads the stored bytes then.
        let exact = message
            .payload
            .as_ref()
            .is_some_and(|stored| stored.len() == payload.get().len());
        let content = (exact && payload.get().len() <= MAX_CARRIED_PAYLOAD).then(|| {
            Arc::new(MessageContent {
                event_type: message.event_type.clone(),
                payload,
                created_at: message.created_at,
            })
        });
        for (endpoint_id, version) in new.endpoint_ids.iter().zip(versions) {
            tasks.push(DeliveryTask {
                content: content.clone(),
                endpoint_version: Some(version),
                ..DeliveryTask::new(
                    new.tenant_id.clone(),
                    message.app_id.clone(),
                    message.id.clone(),
                    endpoint_id.clone(),
                )
            });
        }
    }
    if tasks.is_empty() {
        return;
    }
    let error = match tokio::time::timeout(HANDOFF_TIMEOUT, queue.publish_many(&tasks)).await {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no confirm within {HANDOFF_TIMEOUT:?}"),
    };
    tracing::warn!(%error, messages = handed.len(), "could not queue the deliveries; the relay will");
    for new in handed {
        let msg_id = &new.message.id;
        if let Err(error) = store.return_deliveries(&new.tenant_id, msg_id).await {
            tracing::warn!(%error, %msg_id, "could not return the deliveries to the relay; they are handed out after the lease");
        }
    }
}
