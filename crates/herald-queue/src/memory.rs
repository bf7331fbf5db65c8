//! In-process [`Queue`]: the same contract as RabbitMQ inside one process, for
//! tests and single-process mode. Tasks live in memory only, so a restart loses
//! them; the database (the source of truth) and its reconciler cover that.
//!
//! Timing uses `tokio::time`, so tests with a paused clock work.
//!
//! Dead letters are kept in a ring of [`MemoryQueueOptions::dead_letter_capacity`]
//! (default [`DEFAULT_MEMORY_DEAD_LETTERS`]): past it the oldest is dropped,
//! as RabbitMQ's `x-overflow: drop-head` does, and without their payloads.
//! The worker's drain empties it into the database, the dead-letter view.
//!
//! It also carries the [`EventBus`]: an unbounded FIFO of [`AttemptCompleted`]
//! events with acks, separate from the tasks. Nothing bounds it, so a process
//! that publishes events must also consume them (the embedded mode runs the
//! stats service in the same process).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::EventAcker;
use crate::{
    Acker, AttemptCompleted, Consumer, DeadAcker, DeadLetter, DeadLetterBatch, DeliveryTask,
    EventBus, EventConsumer, Queue, QueueDepths, QueueError, Received, ReceivedEvent,
    DEFAULT_DELIVERY_LIMIT, REASON_DELIVERY_LIMIT,
};

/// Default [`MemoryQueueOptions::dead_letter_capacity`]: a few megabytes of
/// ids, far more than a drain leaves between two rounds.
pub const DEFAULT_MEMORY_DEAD_LETTERS: usize = 10_000;

/// Settings of a [`MemoryQueue`].
#[derive(Clone, Debug)]
pub struct MemoryQueueOptions {
    /// Returns (requeues or lost consumers) a task survives before it is
    /// dead-lettered; the same rule as RabbitMQ's `x-delivery-limit`.
    pub delivery_limit: u32,
    /// Dead letters held at most; past it the oldest is dropped.
    pub dead_letter_capacity: usize,
}

impl Default for MemoryQueueOptions {
    fn default() -> Self {
        Self {
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            dead_letter_capacity: DEFAULT_MEMORY_DEAD_LETTERS,
        }
    }
}

/// An in-process queue ordered by due time, with acks, requeues, a delivery
/// limit and a readable dead-letter list, plus the event stream of its
/// [`EventBus`]. Cloning shares the queue.
#[derive(Clone, Debug)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every change a waiting consumer might care about.
    changed: Notify,
    /// The same for event consumers.
    events_changed: Notify,
    delivery_limit: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Tasks waiting for a consumer, earliest due first.
    ready: BinaryHeap<Pending>,
    /// Tasks handed out and not yet acked, by delivery id.
    in_flight: HashMap<u64, InFlight>,
    /// Number of in-flight tasks per live consumer, for prefetch.
    consumers: HashMap<u64, usize>,
    /// Dead letters not taken yet, oldest first, at most `dead_capacity`.
    dead: VecDeque<DeadLetter>,
    dead_capacity: usize,
    /// The event stream.
    events: EventState,
    next_id: u64,
    closed: bool,
}

/// The events of the [`EventBus`], in publish order.
#[derive(Debug, Default)]
struct EventState {
    /// Events waiting for a consumer, by publish sequence number; a returned
    /// event goes back to its place, so it comes before anything published after it.
    ready: VecDeque<(u64, AttemptCompleted)>,
    /// Events handed out and not yet acked, by delivery id.
    in_flight: HashMap<u64, InFlightEvent>,
    /// Number of in-flight events per live event consumer, for prefetch.
    consumers: HashMap<u64, usize>,
}

#[derive(Debug)]
struct InFlightEvent {
    consumer: u64,
    seq: u64,
    event: AttemptCompleted,
}

impl EventState {
    /// Puts an event handed out and not acked back in its place.
    fn return_event(&mut self, in_flight: InFlightEvent) {
        let at = self.ready.partition_point(|(seq, _)| *seq < in_flight.seq);
        self.ready.insert(at, (in_flight.seq, in_flight.event));
    }

    fn take_in_flight(&mut self, delivery: u64) -> Option<InFlightEvent> {
        let in_flight = self.in_flight.remove(&delivery)?;
        if let Some(count) = self.consumers.get_mut(&in_flight.consumer) {
            *count = count.saturating_sub(1);
        }
        Some(in_flight)
    }
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    /// Insertion order, so tasks due at the same instant stay FIFO.
    seq: u64,
    task: DeliveryTask,
    returns: u32,
}

#[derive(Debug)]
struct InFlight {
    consumer: u64,
    task: DeliveryTask,
    returns: u32,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    // Reversed: `BinaryHeap` is a max-heap and the earliest task must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn push(&mut self, task: DeliveryTask, due: Instant, returns: u32) {
        let seq = self.next_id();
        self.ready.push(Pending {
            due,
            seq,
            task,
            returns,
        });
    }

    /// Puts a task that came back unacked into the queue again, or dead-letters
    /// it once it has come back more often than the limit allows.
    fn return_task(&mut self, task: DeliveryTask, returns: u32, delivery_limit: u32) {
        let returns = returns.saturating_add(1);
        if returns > delivery_limit {
            tracing::warn!(
                msg_id = %task.msg_id,
                endpoint_id = %task.endpoint_id,
                returns,
                "task exceeded the delivery limit; dead-lettering it"
            );
            self.push_dead(DeadLetter {
                task,
                reason: REASON_DELIVERY_LIMIT.to_owned(),
            });
        } else {
            self.push(task, Instant::now(), returns);
        }
    }

    /// Adds a dead letter without its message content (the database holds
    /// it), dropping the oldest past the capacity.
    fn push_dead(&mut self, mut letter: DeadLetter) {
        letter.task.content = None;
        self.dead.push_back(letter);
        self.trim_dead();
    }

    fn trim_dead(&mut self) {
        while self.dead.len() > self.dead_capacity {
            if let Some(dropped) = self.dead.pop_front() {
                tracing::warn!(
                    msg_id = %dropped.task.msg_id,
                    endpoint_id = %dropped.task.endpoint_id,
                    "dead-letter queue full; dropping its oldest letter"
                );
            }
        }
    }

    fn take_in_flight(&mut self, delivery: u64) -> Option<InFlight> {
        let in_flight = self.in_flight.remove(&delivery)?;
        if let Some(count) = self.consumers.get_mut(&in_flight.consumer) {
            *count = count.saturating_sub(1);
        }
        Some(in_flight)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a
        // way that matters more than losing the queue, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryQueue {
    /// Creates an empty queue with default options.
    pub fn new() -> Self {
        Self::with_options(MemoryQueueOptions::default())
    }

    /// Creates an empty queue.
    pub fn with_options(options: MemoryQueueOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    dead_capacity: options.dead_letter_capacity.max(1),
                    ..State::default()
                }),
                changed: Notify::new(),
                events_changed: Notify::new(),
                delivery_limit: options.delivery_limit,
            }),
        }
    }

    /// The dead letters held (dead-lettered and not taken), oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.lock().dead.iter().cloned().collect()
    }

    /// Number of tasks waiting (due or not) plus tasks handed out and not acked.
    pub fn len(&self) -> usize {
        let state = self.shared.lock();
        state.ready.len() + state.in_flight.len()
    }

    /// True when no task is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn enqueue(&self, tasks: &[DeliveryTask], due: Instant) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        for task in tasks {
            state.push(task.clone(), due, 0);
        }
        drop(state);
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let state = self.shared.lock();
        let now = Instant::now();
        let delayed = state.ready.iter().filter(|p| p.due > now).count();
        Ok(QueueDepths {
            ready: (state.ready.len() - delayed) as u64,
            delayed: delayed as u64,
            dead: state.dead.len() as u64,
            stats_events: state.events.ready.len() as u64,
        })
    }

    async fn publish(&self, task: &DeliveryTask) -> Result<(), QueueError> {
        self.enqueue(std::slice::from_ref(task), Instant::now())
    }

    async fn publish_many(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError> {
        self.enqueue(tasks, Instant::now())
    }

    async fn publish_delayed(
        &self,
        task: &DeliveryTask,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.enqueue(std::slice::from_ref(task), Instant::now() + delay)
    }

    async fn dead_letter(&self, task: &DeliveryTask, reason: &str) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        state.push_dead(DeadLetter {
            task: task.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    async fn take_dead_letters(&self, max: usize) -> Result<DeadLetterBatch, QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let count = max.min(state.dead.len());
        let letters: Vec<DeadLetter> = state.dead.drain(..count).collect();
        Ok(DeadLetterBatch::new(
            letters.clone(),
            DeadAcker::Memory(MemoryDeadAcker {
                shared: Arc::clone(&self.shared),
                letters,
            }),
        ))
    }

    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let id = state.next_id();
        state.consumers.insert(id, 0);
        Ok(Box::new(MemoryConsumer {
            shared: Arc::clone(&self.shared),
            id,
            prefetch: usize::from(prefetch),
        }))
    }

    async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
        self.shared.events_changed.notify_waiters();
    }
}

#[async_trait]
impl EventBus for MemoryQueue {
    async fn publish_attempts(&self, events: &[AttemptCompleted]) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        for event in events {
            let seq = state.next_id();
            state.events.ready.push_back((seq, event.clone()));
        }
        drop(state);
        self.shared.events_changed.notify_waiters();
        Ok(())
    }

    async fn consume_attempts(&self, prefetch: u16) -> Result<Box<dyn EventConsumer>, QueueError> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        let id = state.next_id();
        state.events.consumers.insert(id, 0);
        Ok(Box::new(MemoryEventConsumer {
            shared: Arc::clone(&self.shared),
            id,
            prefetch: usize::from(prefetch),
        }))
    }
}

struct MemoryConsumer {
    shared: Arc<Shared>,
    id: u64,
    /// 0 means unlimited, as in AMQP's `basic.qos`.
    prefetch: usize,
}

enum Poll {
    Ready(Received),
    WaitUntil(Instant),
    WaitForChange,
    Closed,
}

impl MemoryConsumer {
    fn poll(&self) -> Poll {
        let mut state = self.shared.lock();
        if state.closed {
            return Poll::Closed;
        }
        let held = state.consumers.get(&self.id).copied().unwrap_or(0);
        if self.prefetch != 0 && held >= self.prefetch {
            return Poll::WaitForChange;
        }
        match state.ready.peek() {
            None => return Poll::WaitForChange,
            Some(next) if next.due > Instant::now() => return Poll::WaitUntil(next.due),
            Some(_) => {}
        }
        let Some(pending) = state.ready.pop() else {
            return Poll::WaitForChange;
        };
        let delivery = state.next_id();
        state.in_flight.insert(
            delivery,
            InFlight {
                consumer: self.id,
                task: pending.task.clone(),
                returns: pending.returns,
            },
        );
        *state.consumers.entry(self.id).or_insert(0) += 1;
        Poll::Ready(Received::new(
            pending.task,
            pending.returns > 0,
            Acker::Memory(MemoryAcker {
                shared: Arc::clone(&self.shared),
                delivery,
            }),
        ))
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Received> {
        loop {
            // Register for wake-ups before looking at the state, so a change made
            // between the look and the wait is not missed.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.poll() {
                Poll::Ready(received) => return Some(received),
                Poll::Closed => return None,
                Poll::WaitForChange => changed.await,
                Poll::WaitUntil(due) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
            }
        }
    }
}

impl Drop for MemoryConsumer {
    /// A consumer that goes away returns its unacked tasks, like a closed AMQP
    /// channel does.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.consumers.remove(&self.id);
        let mine: Vec<u64> = state
            .in_flight
            .iter()
            .filter(|(_, in_flight)| in_flight.consumer == self.id)
            .map(|(delivery, _)| *delivery)
            .collect();
        for delivery in mine {
            if let Some(in_flight) = state.in_flight.remove(&delivery) {
                state.return_task(
                    in_flight.task,
                    in_flight.returns,
                    self.shared.delivery_limit,
                );
            }
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

/// Acknowledges one delivery of a [`MemoryQueue`].
pub(crate) struct MemoryAcker {
    shared: Arc<Shared>,
    delivery: u64,
}

impl MemoryAcker {
    pub(crate) fn ack(self) -> Result<(), QueueError> {
        let taken = self.shared.lock().take_in_flight(self.delivery);
        self.shared.changed.notify_waiters();
        match taken {
            Some(_) => Ok(()),
            None => Err(stale()),
        }
    }

    pub(crate) fn requeue(self) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        let Some(in_flight) = state.take_in_flight(self.delivery) else {
            return Err(stale());
        };
        state.return_task(
            in_flight.task,
            in_flight.returns,
            self.shared.delivery_limit,
        );
        drop(state);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    /// Called when the `Received` is dropped unacked.
    pub(crate) fn release(self) {
        // Stale means the consumer already returned the task; nothing to do.
        let _ = self.requeue();
    }
}

/// The letters of a [`DeadLetterBatch`] taken from a [`MemoryQueue`]: gone
/// once acked, back at the head of the ring if the batch is dropped.
pub(crate) struct MemoryDeadAcker {
    shared: Arc<Shared>,
    letters: Vec<DeadLetter>,
}

impl MemoryDeadAcker {
    pub(crate) fn ack(self) -> Result<(), QueueError> {
        Ok(())
    }

    pub(crate) fn release(self) {
        let mut state = self.shared.lock();
        for letter in self.letters.into_iter().rev() {
            state.dead.push_front(letter);
        }
        state.trim_dead();
    }
}

fn stale() -> QueueError {
    QueueError::StaleDelivery("its consumer was dropped and the task was returned".to_owned())
}

struct MemoryEventConsumer {
    shared: Arc<Shared>,
    id: u64,
    /// 0 means unlimited, as in AMQP's `basic.qos`.
    prefetch: usize,
}

enum EventPoll {
    // Boxed: an event is much larger than the other variants.
    Ready(Box<ReceivedEvent>),
    Wait,
    Closed,
}

impl MemoryEventConsumer {
    fn poll(&self) -> EventPoll {
        let mut state = self.shared.lock();
        if state.closed {
            return EventPoll::Closed;
        }
        let held = state.events.consumers.get(&self.id).copied().unwrap_or(0);
        if self.prefetch != 0 && held >= self.prefetch {
            return EventPoll::Wait;
        }
        let Some((seq, event)) = state.events.ready.pop_front() else {
            return EventPoll::Wait;
        };
        let delivery = state.next_id();
        state.events.in_flight.insert(
            delivery,
            InFlightEvent {
                consumer: self.id,
                seq,
                event: event.clone(),
            },
        );
        *state.events.consumers.entry(self.id).or_insert(0) += 1;
        EventPoll::Ready(Box::new(ReceivedEvent::new(
            event,
            EventAcker::Memory(MemoryEventAcker {
                shared: Arc::clone(&self.shared),
                delivery,
            }),
        )))
    }
}

#[async_trait]
impl EventConsumer for MemoryEventConsumer {
    async fn next(&mut self) -> Option<ReceivedEvent> {
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = self.shared.events_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.poll() {
                EventPoll::Ready(received) => return Some(*received),
                EventPoll::Closed => return None,
                EventPoll::Wait => changed.await,
            }
        }
    }
}

impl Drop for MemoryEventConsumer {
    /// A consumer that goes away returns its unacked events, like a closed AMQP
    /// channel does.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.events.consumers.remove(&self.id);
        let mine: Vec<u64> = state
            .events
            .in_flight
            .iter()
            .filter(|(_, in_flight)| in_flight.consumer == self.id)
            .map(|(delivery, _)| *delivery)
            .collect();
        for delivery in mine {
            if let Some(in_flight) = state.events.in_flight.remove(&delivery) {
                state.events.return_event(in_flight);
            }
        }
        drop(state);
        self.shared.events_changed.notify_waiters();
    }
}

/// Acknowledges one event delivery of a [`MemoryQueue`].
pub(crate) struct MemoryEventAcker {
    shared: Arc<Shared>,
    delivery: u64,
}

impl MemoryEventAcker {
    pub(crate) fn ack(self) -> Result<(), QueueError> {
        let taken = self.shared.lock().events.take_in_flight(self.delivery);
        self.shared.events_changed.notify_waiters();
        match taken {
            Some(_) => Ok(()),
            None => Err(QueueError::StaleDelivery(
                "its consumer was dropped and the event was returned".to_owned(),
            )),
        }
    }

    /// Called when the `ReceivedEvent` is dropped unacked: the event goes back to
    /// its place in the stream. Nothing to do when its consumer already returned it.
    pub(crate) fn release(self) {
        let mut state = self.shared.lock();
        if let Some(in_flight) = state.events.take_in_flight(self.delivery) {
            state.events.return_event(in_flight);
        }
        drop(state);
        self.shared.events_changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u32) -> DeliveryTask {
        let id = |prefix: &str, n: u32| format!("{prefix}{n:0>27}");
        DeliveryTask::new(
            herald_core::TenantId::parse(&id("tnt_", 1)).unwrap(),
            herald_core::ApplicationId::parse(&id("app_", 1)).unwrap(),
            herald_core::MessageId::parse(&id("msg_", n)).unwrap(),
            herald_core::EndpointId::parse(&id("ep_", 1)).unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_come_out_in_due_order_and_not_before_due() {
        let queue = MemoryQueue::new();
        queue
            .publish_delayed(&task(1), Duration::from_secs(30))
            .await
            .unwrap();
        queue
            .publish_delayed(&task(2), Duration::from_secs(10))
            .await
            .unwrap();
        queue.publish(&task(3)).await.unwrap();
        let start = Instant::now();
        let mut consumer = queue.consume(0).await.unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let received = consumer.next().await.unwrap();
            order.push((received.task.msg_id.clone(), start.elapsed().as_secs()));
            received.ack().await.unwrap();
        }
        assert_eq!(
            order,
            [
                (task(3).msg_id, 0),
                (task(2).msg_id, 10),
                (task(1).msg_id, 30)
            ]
        );
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_bounds_unacked_tasks_per_consumer() {
        let queue = MemoryQueue::new();
        queue.publish_many(&[task(1), task(2)]).await.unwrap();
        let mut consumer = queue.consume(1).await.unwrap();
        let first = consumer.next().await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        assert!(blocked.is_err(), "second task handed out beyond prefetch");
        first.ack().await.unwrap();
        let second = consumer.next().await.unwrap();
        assert_eq!(second.task, task(2));
    }

    fn event(n: u32) -> AttemptCompleted {
        AttemptCompleted {
            attempt_id: format!("atmpt_{n}"),
            tenant_id: "tnt_1".into(),
            app_id: "app_1".into(),
            endpoint_id: "ep_1".into(),
            event_type: "user.created".into(),
            success: true,
            status_code: 200,
            error_class: None,
            duration_us: 10,
            at_us: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn returned_events_go_back_to_the_front_in_order() {
        let queue = MemoryQueue::new();
        for n in 1..=4 {
            queue.publish_attempt(&event(n)).await.unwrap();
        }
        let mut first = queue.consume_attempts(0).await.unwrap();
        let one = first.next().await.unwrap();
        let two = first.next().await.unwrap();
        let three = first.next().await.unwrap();
        drop(two);
        one.ack().await.unwrap();
        // The consumer goes away holding event 3; event 2 was dropped before.
        drop(first);
        assert!(matches!(
            three.ack().await,
            Err(QueueError::StaleDelivery(_))
        ));

        let mut second = queue.consume_attempts(0).await.unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let received = second.next().await.unwrap();
            order.push(received.event.attempt_id.clone());
            received.ack().await.unwrap();
        }
        assert_eq!(order, ["atmpt_2", "atmpt_3", "atmpt_4"]);
        assert!(queue.shared.lock().events.ready.is_empty());
        assert!(queue.shared.lock().events.in_flight.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_waiting_consumers() {
        let queue = MemoryQueue::new();
        let mut consumer = queue.consume(0).await.unwrap();
        let waiting = tokio::spawn(async move { consumer.next().await.is_none() });
        tokio::task::yield_now().await;
        queue.close().await;
        assert!(waiting.await.unwrap());
        assert!(matches!(
            queue.publish(&task(1)).await,
            Err(QueueError::Closed)
        ));
    }
}
