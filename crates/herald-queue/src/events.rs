//! The event bus: finished delivery attempts, published by the worker and
//! counted by the stats service.
//!
//! It is a second, independent stream next to the task queue, with the same
//! guarantees: a publish that returns `Ok` is durable, delivery is at least once
//! (an event whose consumer goes away unacked, or that is dropped unacked, is
//! delivered again), and competing consumers share the stream, each event going
//! to one of them. Consumers therefore must tolerate duplicates; `attempt_id` is
//! the natural key to deduplicate on.
//!
//! - [`RabbitQueue`](crate::RabbitQueue) publishes to the fanout exchange
//!   `{prefix}.attempts`; the stats service consumes the quorum queue
//!   `{prefix}.stats` bound to it, which is bounded (`x-max-length`, default
//!   [`DEFAULT_STATS_MAX_LENGTH`](crate::DEFAULT_STATS_MAX_LENGTH), overflow
//!   `reject-publish`) so a stopped stats service cannot fill the broker. Once
//!   the queue is full the broker refuses further events: `publish_attempt`
//!   fails at once with [`QueueError::Unavailable`] instead of retrying, and the
//!   refused events are not counted. Other consumers can later bind their own
//!   queues to the exchange and get every event too.
//! - [`MemoryQueue`](crate::MemoryQueue) keeps events in an unbounded in-process
//!   FIFO with the same ack semantics, for the embedded mode; events live only as
//!   long as the process.
//!
//! Closing the queue ([`Queue::close`](crate::Queue::close)) closes the bus too:
//! consumers' [`EventConsumer::next`] returns `None` and publishes fail with
//! [`QueueError::Closed`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use async_trait::async_trait;
use herald_core::ErrorClass;
use serde::{Deserialize, Serialize};

use crate::{memory, rabbit, QueueError};

/// One finished delivery attempt, as the stats service counts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptCompleted {
    /// The recorded attempt (`atmpt_…`); unique, so a key to deduplicate on.
    pub attempt_id: String,
    /// Tenant owning the message.
    pub tenant_id: String,
    /// Application the message was posted to.
    pub app_id: String,
    /// Endpoint the attempt was made to.
    pub endpoint_id: String,
    /// The message's event type.
    pub event_type: String,
    /// True when the endpoint answered 2xx.
    pub success: bool,
    /// The HTTP status, 0 when there was no response.
    pub status_code: u16,
    /// None on success; else the worker's error class, as its name
    /// ("timeout", "5xx", …). A name this version does not know (an event
    /// queued by another version) decodes as [`ErrorClass::Other`].
    pub error_class: Option<ErrorClass>,
    /// How long the attempt took, microseconds.
    pub duration_us: u64,
    /// When the attempt finished, Unix microseconds.
    pub at_us: i64,
}

/// Transport of [`AttemptCompleted`] events from the workers to the stats service.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes one event durably (persistent message, publisher confirm). Fails
    /// (QueueError) rather than blocking forever when the broker is unreachable.
    async fn publish_attempt(&self, event: &AttemptCompleted) -> Result<(), QueueError> {
        self.publish_attempts(std::slice::from_ref(event)).await
    }
    /// Publishes several events durably at once: all or (on `Err`) possibly
    /// none. RabbitMQ carries them in one message, a JSON array, which costs
    /// the broker one message instead of one per event.
    async fn publish_attempts(&self, events: &[AttemptCompleted]) -> Result<(), QueueError>;
    /// Starts consuming events for the stats service, at most `prefetch` unacknowledged at once.
    /// Competing consumers (several stats processes) share the stream: each event goes to one of them.
    async fn consume_attempts(&self, prefetch: u16) -> Result<Box<dyn EventConsumer>, QueueError>;
}

/// Most events one batch of a [`BatchingEventBus`] carries.
const MAX_BATCH: usize = 500;

type Pending = (
    AttemptCompleted,
    tokio::sync::oneshot::Sender<Result<(), QueueError>>,
);

/// An [`EventBus`] that publishes concurrent events together: while one batch
/// waits for the broker's confirm, the events published meanwhile gather into
/// the next. A lone event goes out at once; under load the broker sees one
/// message per batch instead of one per event. `publish_attempt` still returns
/// only once its event is confirmed.
pub struct BatchingEventBus {
    inner: Arc<dyn EventBus>,
    pending: tokio::sync::mpsc::Sender<Pending>,
}

impl BatchingEventBus {
    /// Wraps `inner`; spawns the publishing task, which ends when this is dropped.
    pub fn new(inner: Arc<dyn EventBus>) -> Self {
        let (pending, mut queued) = tokio::sync::mpsc::channel::<Pending>(MAX_BATCH * 4);
        let publisher = inner.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (events, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let outcome = publisher.publish_attempts(&events).await;
                for reply in replies {
                    let _ = reply.send(outcome.clone());
                }
            }
        });
        Self { inner, pending }
    }
}

#[async_trait]
impl EventBus for BatchingEventBus {
    async fn publish_attempts(&self, events: &[AttemptCompleted]) -> Result<(), QueueError> {
        let mut confirms = Vec::with_capacity(events.len());
        for event in events {
            let (reply, confirm) = tokio::sync::oneshot::channel();
            self.pending
                .send((event.clone(), reply))
                .await
                .map_err(|_| QueueError::Closed)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            confirm.await.map_err(|_| QueueError::Closed)??;
        }
        Ok(())
    }

    async fn consume_attempts(&self, prefetch: u16) -> Result<Box<dyn EventConsumer>, QueueError> {
        self.inner.consume_attempts(prefetch).await
    }
}

/// A stream of [`AttemptCompleted`] events.
#[async_trait]
pub trait EventConsumer: Send {
    /// The next event; None once the bus is closed. Survives broker reconnects like the task consumer does.
    async fn next(&mut self) -> Option<ReceivedEvent>;
}

/// An event handed to a consumer; ack once it is durably counted. Dropping it
/// without ack returns it to the stream (it will be redelivered).
pub struct ReceivedEvent {
    /// The finished attempt.
    pub event: AttemptCompleted,
    acker: Option<EventAcker>,
}

pub(crate) enum EventAcker {
    Memory(memory::MemoryEventAcker),
    Rabbit(rabbit::RabbitAcker),
    /// One of several events that arrived in one broker message.
    Shared(Arc<SharedAcker>),
}

/// The acknowledgement of a broker message carrying several events: the
/// message is acknowledged once every event is, and returned to the queue
/// (all its events delivered again) if any is dropped unacknowledged.
pub(crate) struct SharedAcker {
    acker: std::sync::Mutex<Option<rabbit::RabbitAcker>>,
    unsettled: AtomicUsize,
    released: AtomicBool,
}

impl SharedAcker {
    pub(crate) fn new(acker: rabbit::RabbitAcker, events: usize) -> Arc<Self> {
        Arc::new(Self {
            acker: std::sync::Mutex::new(Some(acker)),
            unsettled: AtomicUsize::new(events),
            released: AtomicBool::new(false),
        })
    }

    /// Settles one event; the last one settles the message: an ack when all
    /// were acked, else a requeue.
    fn settle(&self, acked: bool) -> Option<(rabbit::RabbitAcker, bool)> {
        if !acked {
            self.released.store(true, AtomicOrdering::SeqCst);
        }
        if self.unsettled.fetch_sub(1, AtomicOrdering::SeqCst) != 1 {
            return None;
        }
        let acker = self
            .acker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some((acker, !self.released.load(AtomicOrdering::SeqCst)))
    }
}

impl ReceivedEvent {
    pub(crate) fn new(event: AttemptCompleted, acker: EventAcker) -> Self {
        Self {
            event,
            acker: Some(acker),
        }
    }

    /// Confirms the event is counted; it will not be delivered again. Fails with
    /// [`QueueError::StaleDelivery`] when its consumer or connection is already
    /// gone, in which case the event is delivered again.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        match self.acker.take() {
            Some(EventAcker::Memory(acker)) => acker.ack(),
            Some(EventAcker::Rabbit(acker)) => acker.ack().await,
            Some(EventAcker::Shared(shared)) => match shared.settle(true) {
                Some((acker, true)) => acker.ack().await,
                Some((acker, false)) => acker.requeue().await,
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for ReceivedEvent {
    fn drop(&mut self) {
        match self.acker.take() {
            Some(EventAcker::Memory(acker)) => acker.release(),
            Some(EventAcker::Rabbit(acker)) => acker.release(),
            Some(EventAcker::Shared(shared)) => {
                if let Some((acker, _)) = shared.settle(false) {
                    acker.release();
                }
            }
            None => {}
        }
    }
}

impl fmt::Debug for ReceivedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedEvent")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_camel_case_json() {
        let event = AttemptCompleted {
            attempt_id: "atmpt_1".into(),
            tenant_id: "tnt_1".into(),
            app_id: "app_1".into(),
            endpoint_id: "ep_1".into(),
            event_type: "user.created".into(),
            success: false,
            status_code: 503,
            error_class: Some(ErrorClass::Http5xx),
            duration_us: 1_250,
            at_us: 1_700_000_000_000_000,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "attemptId": "atmpt_1",
                "tenantId": "tnt_1",
                "appId": "app_1",
                "endpointId": "ep_1",
                "eventType": "user.created",
                "success": false,
                "statusCode": 503,
                "errorClass": "5xx",
                "durationUs": 1250,
                "atUs": 1_700_000_000_000_000_i64,
            })
        );
        assert_eq!(
            serde_json::from_value::<AttemptCompleted>(json).unwrap(),
            event
        );
    }

    #[test]
    fn events_with_an_unknown_error_class_still_decode() {
        let json = serde_json::json!({
            "attemptId": "atmpt_1",
            "tenantId": "tnt_1",
            "appId": "app_1",
            "endpointId": "ep_1",
            "eventType": "user.created",
            "success": false,
            "statusCode": 0,
            "errorClass": "expired",
            "durationUs": 1,
            "atUs": 0,
        });
        let event = serde_json::from_value::<AttemptCompleted>(json).unwrap();
        assert_eq!(event.error_class, Some(ErrorClass::Other));
        let success = serde_json::json!({
            "attemptId": "atmpt_2",
            "tenantId": "tnt_1",
            "appId": "app_1",
            "endpointId": "ep_1",
            "eventType": "user.created",
            "success": true,
            "statusCode": 200,
            "errorClass": null,
            "durationUs": 1,
            "atUs": 0,
        });
        let event = serde_json::from_value::<AttemptCompleted>(success).unwrap();
        assert_eq!(event.error_class, None);
    }
}
