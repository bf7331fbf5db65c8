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

use async_trait::async_trait;
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
    /// None on success; else the worker's error class ("timeout", "5xx", …).
    pub error_class: Option<String>,
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
    async fn publish_attempt(&self, event: &AttemptCompleted) -> Result<(), QueueError>;
    /// Starts consuming events for the stats service, at most `prefetch` unacknowledged at once.
    /// Competing consumers (several stats processes) share the stream: each event goes to one of them.
    async fn consume_attempts(&self, prefetch: u16) -> Result<Box<dyn EventConsumer>, QueueError>;
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
            None => Ok(()),
        }
    }
}

impl Drop for ReceivedEvent {
    fn drop(&mut self) {
        match self.acker.take() {
            Some(EventAcker::Memory(acker)) => acker.release(),
            Some(EventAcker::Rabbit(acker)) => acker.release(),
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
            error_class: Some("5xx".into()),
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
}
