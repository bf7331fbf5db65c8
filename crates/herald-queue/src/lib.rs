//! Herald's delivery work queue: the [`Queue`] trait the API and the worker use
//! to hand delivery tasks to each other, with two implementations of one
//! contract — [`RabbitQueue`] (RabbitMQ through lapin, for several processes) and
//! [`MemoryQueue`] (in-process, for tests and single-process mode).
//!
//! Delivery is at least once: a task stays in the queue until a consumer acks
//! it, and a task whose consumer goes away unacked is delivered again. Consumers
//! therefore must tolerate duplicates. Delays are described in [`delay`].
//!
//! Next to the task queue both implementations carry the event bus
//! ([`EventBus`]): the worker publishes an [`AttemptCompleted`] per recorded
//! attempt and the stats service consumes them, with the same at-least-once
//! rules. See [`events`].

pub mod delay;
pub mod events;
mod memory;
mod rabbit;
pub mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, EndpointId, EventTypeName, MessageId, TenantId};
use serde_json::value::RawValue;

pub use events::{AttemptCompleted, BatchingEventBus, EventBus, EventConsumer, ReceivedEvent};
pub use memory::{MemoryQueue, MemoryQueueOptions, DEFAULT_MEMORY_DEAD_LETTERS};
pub use rabbit::{
    RabbitOptions, RabbitQueue, Topology, DEFAULT_DEAD_MAX_LENGTH, DEFAULT_SETTLE_TIMEOUT,
    DEFAULT_STATS_MAX_LENGTH,
};

/// How many times a task may be returned to the queue (requeued, or its
/// consumer lost) before it is dead-lettered as poison.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 10;

/// Dead-letter reason the queue itself uses for a task that hit the delivery limit
/// (RabbitMQ's own name for it, so both implementations report the same).
pub const REASON_DELIVERY_LIMIT: &str = "delivery_limit";

/// One unit of delivery work: deliver message `msg_id` to endpoint `endpoint_id`
/// (attempt number `attempt`, 1-based).
///
/// On the broker, tasks travel in batches ([`wire`]): one broker message
/// carries the tasks published together, each message's content once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTask {
    /// Tenant owning the message; every store lookup the worker makes starts here.
    pub tenant_id: TenantId,
    /// Application the message was posted to.
    pub app_id: ApplicationId,
    /// Message to deliver.
    pub msg_id: MessageId,
    /// Endpoint to deliver it to.
    pub endpoint_id: EndpointId,
    /// Attempt number this task performs, starting at 1.
    pub attempt: u32,
    /// True when a user asked for this attempt (resend/recover) rather than the schedule.
    pub manual: bool,
    /// How many times this task's attempt was made but could not be recorded
    /// (the worker backs off and gives up on it by this count).
    pub record_failures: u32,
    /// The message itself, when the publisher had it at hand (the API, as it
    /// accepts the message): the worker then needs no database read for it.
    /// Tasks of one message share it.
    pub content: Option<Arc<MessageContent>>,
    /// The endpoint's `updated_at` as the publisher saw it: a worker's cached
    /// copy of the endpoint older than this is not used.
    pub endpoint_version: Option<DateTime<Utc>>,
}

impl DeliveryTask {
    /// A task for a delivery known by its ids alone; the worker reads the
    /// message and the endpoint.
    pub fn new(
        tenant_id: TenantId,
        app_id: ApplicationId,
        msg_id: MessageId,
        endpoint_id: EndpointId,
    ) -> Self {
        Self {
            tenant_id,
            app_id,
            msg_id,
            endpoint_id,
            attempt: 1,
            manual: false,
            record_failures: 0,
            content: None,
            endpoint_version: None,
        }
    }
}

/// What a worker needs of a message to attempt it.
#[derive(Debug)]
pub struct MessageContent {
    pub event_type: EventTypeName,
    /// The payload, exactly as stored (and signed).
    pub payload: Box<RawValue>,
    pub created_at: DateTime<Utc>,
}

impl PartialEq for MessageContent {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.payload.get() == other.payload.get()
            && self.created_at == other.created_at
    }
}
impl Eq for MessageContent {}

/// A task that was taken out of circulation, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The task as it was last queued.
    pub task: DeliveryTask,
    /// The reason given to [`Queue::dead_letter`], or [`REASON_DELIVERY_LIMIT`]
    /// when the queue dead-lettered a poison task itself.
    pub reason: String,
}

/// Dead letters taken out of the dead-letter queue by
/// [`Queue::take_dead_letters`], held until [`DeadLetterBatch::ack`]: a batch
/// dropped unacked goes back to the queue, so a drain that fails before it
/// has recorded them loses none.
pub struct DeadLetterBatch {
    /// The letters, oldest first.
    pub letters: Vec<DeadLetter>,
    acker: Option<DeadAcker>,
}

enum DeadAcker {
    Memory(memory::MemoryDeadAcker),
    Rabbit(Box<rabbit::RabbitDeadAcker>),
}

impl DeadLetterBatch {
    fn new(letters: Vec<DeadLetter>, acker: DeadAcker) -> Self {
        Self {
            letters,
            acker: Some(acker),
        }
    }

    /// Removes the batch's letters from the queue for good.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        match self.acker.take() {
            Some(DeadAcker::Memory(acker)) => acker.ack(),
            Some(DeadAcker::Rabbit(acker)) => acker.ack().await,
            None => Ok(()),
        }
    }
}

impl Drop for DeadLetterBatch {
    fn drop(&mut self) {
        match self.acker.take() {
            Some(DeadAcker::Memory(acker)) => acker.release(),
            Some(DeadAcker::Rabbit(acker)) => acker.release(),
            None => {}
        }
    }
}

impl fmt::Debug for DeadLetterBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterBatch")
            .field("letters", &self.letters)
            .finish_non_exhaustive()
    }
}

/// Errors at the boundary of the queue crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached, did not confirm in time, or refused the
    /// message (for an event: the stats queue is full); the operation may be
    /// retried later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// Declaring queues or exchanges failed, usually because they already exist
    /// with different arguments.
    #[error("queue topology error: {0}")]
    Topology(String),
    /// The delivery can no longer be acknowledged because its consumer or channel
    /// is gone; the queue delivers the task again.
    #[error("delivery no longer valid: {0}")]
    StaleDelivery(String),
    /// The task could not be encoded.
    #[error("invalid task: {0}")]
    Encode(String),
    /// [`Queue::close`] was called.
    #[error("queue is closed")]
    Closed,
}

/// Messages waiting in the queue, by part. RabbitMQ counts broker messages:
/// tasks published together in one batch ([`wire`]) count once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Delivery tasks due now and not handed to a consumer.
    pub ready: u64,
    /// Delivery tasks waiting for their retry delay.
    pub delayed: u64,
    /// Dead letters not yet taken.
    pub dead: u64,
    /// Attempt events the stats service has not taken.
    pub stats_events: u64,
}

/// The delivery work queue.
///
/// Every publish is durable once it returns `Ok` (for RabbitMQ: the broker
/// confirmed it). Publishing retries internally over reconnects and gives up
/// with [`QueueError::Unavailable`] after a bounded time.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Queues `task` for immediate delivery.
    async fn publish(&self, task: &DeliveryTask) -> Result<(), QueueError>;

    /// Queues several tasks at once; their confirmations are awaited together.
    /// On error some of the tasks may have been queued.
    async fn publish_many(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError>;

    /// Queues `task` so that no consumer sees it before `delay` has passed.
    async fn publish_delayed(&self, task: &DeliveryTask, delay: Duration)
        -> Result<(), QueueError>;

    /// Moves `task` to the dead-letter queue with a human-readable `reason`.
    async fn dead_letter(&self, task: &DeliveryTask, reason: &str) -> Result<(), QueueError>;

    /// Takes up to `max` dead letters, oldest first, for the worker's drain
    /// (and operators' tools). They stay the batch's until it is acked; a
    /// batch dropped unacked returns them. The dead-letter queue is bounded
    /// (it drops its oldest letters past the bound), so it is a hand-over to
    /// the database, never the only record of a dead delivery.
    async fn take_dead_letters(&self, max: usize) -> Result<DeadLetterBatch, QueueError>;

    /// Starts a consumer that holds at most `prefetch` unacknowledged tasks
    /// (0 means unlimited).
    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// How many messages wait in each part of the queue, for monitoring.
    async fn depths(&self) -> Result<QueueDepths, QueueError>;

    /// Shuts the queue down: consumers' [`Consumer::next`] returns `None`, later
    /// publishes fail with [`QueueError::Closed`]. Call it last, after in-flight
    /// tasks were acked or requeued. It closes the implementation's
    /// [`EventBus`] as well.
    async fn close(&self);
}

/// A stream of due delivery tasks.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next due task. Returns `None` only after [`Queue::close`];
    /// lost connections are re-established transparently.
    async fn next(&mut self) -> Option<Received>;
}

/// A task handed to a consumer, to be acked or requeued.
///
/// Dropping it without calling either returns the task to the queue, as if it
/// had been requeued.
pub struct Received {
    /// The task to perform.
    pub task: DeliveryTask,
    /// True when this task was delivered before and not acked (requeued, or its
    /// consumer was lost), so the work may have been done already.
    pub redelivered: bool,
    acker: Option<Acker>,
}

enum Acker {
    Memory(memory::MemoryAcker),
    Rabbit(rabbit::RabbitAcker),
    /// A task that shares its broker message with others.
    RabbitPart(rabbit::PartAcker),
}

impl Received {
    fn new(task: DeliveryTask, redelivered: bool, acker: Acker) -> Self {
        Self {
            task,
            redelivered,
            acker: Some(acker),
        }
    }

    /// Confirms the task is done; it will not be delivered again.
    pub async fn ack(mut self) -> Result<(), QueueError> {
        match self.acker.take() {
            Some(Acker::Memory(acker)) => acker.ack(),
            Some(Acker::Rabbit(acker)) => acker.ack().await,
            Some(Acker::RabbitPart(acker)) => acker.ack().await,
            None => Ok(()),
        }
    }

    /// Returns the task to the queue for another delivery. Each return counts
    /// towards the delivery limit, past which the task is dead-lettered.
    pub async fn requeue(mut self) -> Result<(), QueueError> {
        match self.acker.take() {
            Some(Acker::Memory(acker)) => acker.requeue(),
            Some(Acker::Rabbit(acker)) => acker.requeue().await,
            Some(Acker::RabbitPart(acker)) => acker.requeue(&self.task).await,
            None => Ok(()),
        }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        match self.acker.take() {
            Some(Acker::Memory(acker)) => acker.release(),
            Some(Acker::Rabbit(acker)) => acker.release(),
            Some(Acker::RabbitPart(acker)) => acker.release(self.task.clone()),
            None => {}
        }
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("task", &self.task)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff with ±20% jitter: `min · 2^(attempt-1)`, capped at `max`.
/// Jitter spreads reconnecting processes so they do not hit a restarted broker
/// in lockstep.
fn backoff_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let base = min.saturating_mul(1u32 << exponent).min(max);
    base.mul_f64(rand::random::<f64>() * 0.4 + 0.8).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert!(backoff_delay(1, min, max) <= Duration::from_millis(120));
        assert!(backoff_delay(4, min, max) >= Duration::from_millis(640));
        assert!(backoff_delay(50, min, max) <= max);
        assert!(backoff_delay(50, min, max) >= Duration::from_secs(8));
    }
}
