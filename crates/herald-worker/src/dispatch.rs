//! The delivery loop: the outbox relay that hands due deliveries to the queue,
//! and the consumer that turns each task into one attempt, records it and
//! decides what happens next.
//!
//! The database is the source of truth. The relay claims due deliveries with a
//! lease and publishes them; a worker that dies mid-task leaves its delivery to
//! come due again when the lease ends, and RabbitMQ redelivers the task it held.
//! So every accepted message is attempted at least once, whatever restarts.
//! A task is acknowledged only after its attempt is committed. One whose
//! attempt cannot be committed is not sent again at once: it backs off, and
//! after as many sends as the schedule allows attempts its delivery is dead.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::SeedableRng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use url::Url;

use herald_cache::throttle::{MemoryThrottle, Reservation, Throttle};
use herald_core::policy::RetryPolicy;
use herald_core::retry::{Decision, FinishedAttempt, RetrySchedule};
use herald_core::{AttemptId, EventTypeName, TenantId};
use herald_queue::{AttemptCompleted, DeliveryTask, EventBus, Queue, Received};
use herald_store::group::{whole_or_one_by_one, GroupCommit};
use herald_store::{
    Attempt, AttemptRecord, AttemptTrigger, DeliveryKey, DeliveryState, DeliveryStore,
    DeliveryTarget, DeliveryUpdate, Endpoint, EndpointHealth, StoreError, StoreResult,
};

use crate::endpoints::EndpointCache;
use crate::operational;
use crate::send::{DeliveryRequest, Sender};

/// The longest a task waits in its endpoint's lane rather than being
/// parked, and the shortest a parked delivery is parked for.
const ENDPOINT_BUSY_DELAY: Duration = Duration::from_secs(1);

/// Tasks a worker takes in at once, per attempt it may have in flight.
const INTAKE_PER_SLOT: usize = 4;

/// The most tasks that wait for one endpoint's slots, per slot.
const MAX_WAITING_PER_SLOT: usize = 64;

/// How long a task that failed before its attempt (a database or broker
/// outage) waits in the queue before it is tried again.
const TASK_FAILED_DELAY: Duration = Duration::from_secs(5);

/// The most tasks loaded, or attempts recorded, in one batch, and the
/// batches of them run at once (see `herald_store::group`).
const RECORD_BATCH: usize = 256;
const RECORD_BATCHES_IN_FLIGHT: usize = 4;

/// Dead-letter reason of a task whose attempts could not be recorded.
const UNRECORDED_REASON: &str = "attempt could not be recorded";
/// Why an endpoint that answered 410 is disabled.
const GONE: &str = "the endpoint answered 410 Gone";

/// Settings of the delivery loop.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Attempts in flight at once per process.
    pub concurrency: usize,
    /// Attempts in flight at once to one endpoint, per process: a slow
    /// endpoint holds at most this many of the `concurrency` slots.
    pub endpoint_concurrency: usize,
    /// How long a claimed or queued delivery may stay unanswered before the
    /// relay hands it out again (a worker or broker lost it).
    pub lease: Duration,
    /// Delays between attempts.
    pub schedule: RetrySchedule,
    /// How often the relay looks for due deliveries.
    pub relay_interval: Duration,
    /// Most deliveries the relay claims per round.
    pub relay_batch: u32,
    /// How long the worker uses a copy of an endpoint it read (see
    /// `endpoints`); zero reads the endpoint for every attempt.
    pub endpoint_cache_ttl: Duration,
    /// Consecutive failed attempts that open an endpoint's circuit breaker
    /// (0: never).
    pub breaker_failures: u32,
    /// How long a breaker stays open before its first probe; doubled for
    /// every failed probe, up to `MAX_BREAKER_COOLDOWN`.
    pub breaker_cooldown: Duration,
    /// An endpoint failing (no success) for this long and at least
    /// `disable_failures` attempts in a row is disabled (zero: never).
    pub disable_after: Duration,
    pub disable_failures: u32,
    /// Attempts in flight at once for one tenant, per process; a tenant's
    /// tasks beyond it (and its waiting line) are parked, so a tenant's
    /// backlog cannot hold every slot while another's fresh tasks wait.
    pub tenant_concurrency: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            endpoint_concurrency: 16,
            lease: Duration::from_secs(300),
            schedule: RetrySchedule::default(),
            relay_interval: Duration::from_millis(100),
            relay_batch: 500,
            endpoint_cache_ttl: Duration::from_secs(1),
            breaker_failures: 10,
            breaker_cooldown: Duration::from_secs(30),
            disable_after: Duration::from_secs(5 * 24 * 60 * 60),
            disable_failures: 10,
            tenant_concurrency: 48,
        }
    }
}

/// What an endpoint's circuit breaker lets a delivery do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    /// Closed (or not consulted: a manual attempt): attempt.
    Closed,
    /// Half-open, and this delivery claimed the probe: attempt.
    Probe,
    /// Open, or another delivery probes: wait this long, no attempt.
    Wait(Duration),
}

/// Longest a breaker stays open between probes.
const MAX_BREAKER_COOLDOWN: Duration = Duration::from_secs(10 * 60);
/// How long the other deliveries wait while a probe is claimed: the probe's
/// success or failure ends it sooner; a worker that died mid-probe lets the
/// next one probe after this.
const PROBE_WINDOW: Duration = Duration::from_secs(60);
/// How long a delivery waits while another one probes its endpoint.
const PROBE_PARK: Duration = Duration::from_secs(1);

/// What went wrong while handling a task, other than the delivery failing
/// (which is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The attempt was made but could not be recorded: the receiver was
    /// called, so the task must not come straight back.
    #[error("could not record the attempt: {0}")]
    Unrecorded(StoreError),
    #[error(transparent)]
    Queue(#[from] herald_queue::QueueError),
    #[error("malformed task: {0}")]
    Malformed(String),
}

/// Handles delivery tasks: one attempt each, recorded with its consequence.
pub struct Dispatcher {
    store: Arc<dyn DeliveryStore>,
    /// Loads what tasks need, many at a time.
    loads: GroupCommit<DeliveryKey, StoreResult<DeliveryTarget>>,
    /// Records finished attempts many at a time, and announces them.
    records: GroupCommit<Finished, StoreResult<()>>,
    queue: Arc<dyn Queue>,
    sender: Sender,
    config: WorkerConfig,
    /// The server's retry policy (`config.schedule`, jitter on, other 4xx
    /// retried), which applications and endpoints override setting by setting.
    default_policy: RetryPolicy,
    /// Endpoints' `throttleRate`, shared by every worker on Redis.
    throttle: Arc<dyn Throttle>,
    /// Per-endpoint lanes.
    busy: Lanes,
    /// Per-tenant lanes: one tenant's backlog is parked beyond its share, so
    /// other tenants' fresh deliveries find free slots.
    tenants: Lanes,
    endpoints: EndpointCache,
}

/// Lanes, per endpoint and per tenant: limit attempts in flight per endpoint
/// (or tenant), so one slow endpoint (or one tenant's flood) cannot take
/// every slot of the process and delay the others. Below, "endpoint" stands
/// for either key.
/// Tasks for an endpoint at its limit wait here while the lane would send
/// them within `ENDPOINT_BUSY_DELAY` (at its limit and its measured attempt
/// time; at least as many as the limit wait, at most `MAX_WAITING_PER_SLOT`
/// times the limit); beyond that their deliveries are parked in the database
/// (due later, when the relay hands them out again) and their tasks acked, so
/// a slow endpoint's backlog waits where it costs nothing instead of cycling
/// through the broker in front of every other endpoint's tasks, while a fast
/// endpoint's burst simply waits its turn. The park
/// times are spread at the pace the lane drains (its limit over the time an
/// attempt takes), so the backlog comes back about as fast as it can be sent.
#[derive(Default)]
struct Lanes {
    gates: std::sync::Mutex<std::collections::HashMap<String, Gate>>,
}

/// One endpoint's attempts in flight (permits taken) and tasks waiting.
struct Gate {
    permits: Arc<Semaphore>,
    waiting: usize,
    /// Slots held plus tasks waiting: the gate is dropped when none are left
    /// and nothing it parked is still due later.
    users: usize,
    /// How long an attempt to the endpoint takes (a moving average).
    attempt_time: Duration,
    /// When the last delivery this lane parked is due.
    parked_until: std::time::Instant,
}

impl Gate {
    /// Whether one more task may wait for a slot rather than be parked.
    fn may_wait(&self, limit: usize) -> bool {
        if self.waiting < limit {
            return true;
        }
        let rounds = u32::try_from(self.waiting / limit.max(1) + 1).unwrap_or(u32::MAX);
        self.waiting < limit.saturating_mul(MAX_WAITING_PER_SLOT)
            && self.attempt_time.saturating_mul(rounds) <= ENDPOINT_BUSY_DELAY
    }

    fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            waiting: 0,
            users: 0,
            // Until an attempt is measured: ten rounds of waiting before
            // parking, so a fast endpoint's first burst is not parked.
            attempt_time: ENDPOINT_BUSY_DELAY / 10,
            parked_until: std::time::Instant::now(),
        }
    }

    /// How long to park one more delivery: after the ones parked before it,
    /// each taking the time the lane needs to send one.
    fn park(&mut self, limit: usize) -> Duration {
        let now = std::time::Instant::now();
        let each = self.attempt_time / u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        self.parked_until = self.parked_until.max(now + ENDPOINT_BUSY_DELAY) + each;
        self.parked_until - now
    }
}

/// One task's claim on its endpoint's gate, from waiting to finishing; gives
/// the slot (if taken) back and forgets the gate when nobody uses it.
struct LaneSlot<'a> {
    slots: &'a Lanes,
    key: String,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// When the slot's attempt started: its time feeds the lane's average.
    taken_at: std::time::Instant,
    /// Whether the slot was used for an attempt (only then is it timed).
    attempted: bool,
}

impl LaneSlot<'_> {
    /// The attempt starts now: its time is counted from here.
    fn start(&mut self) {
        self.taken_at = std::time::Instant::now();
        self.attempted = true;
    }
}

impl Lanes {
    fn gates(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Gate>> {
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot in the lane of `key`, waiting for one while fewer than `limit`
    /// other tasks wait; when the waiting line is full too, how long to park
    /// the delivery for.
    async fn take(&self, key: &str, limit: usize) -> Result<LaneSlot<'_>, Duration> {
        let waiting = {
            let mut gates = self.gates();
            let gate = gates
                .entry(key.to_owned())
                .or_insert_with(|| Gate::new(limit));
            let permit = gate.permits.clone().try_acquire_owned().ok();
            if permit.is_none() && !gate.may_wait(limit) {
                return Err(gate.park(limit));
            }
            gate.users += 1;
            let slot = LaneSlot {
                slots: self,
                key: key.to_owned(),
                permit,
                taken_at: std::time::Instant::now(),
                attempted: false,
            };
            if slot.permit.is_some() {
                return Ok(slot);
            }
            gate.waiting += 1;
            (slot, gate.permits.clone())
        };
        let (mut slot, permits) = waiting;
        // If this wait is cancelled, `slot` still gives its place back on drop.
        let waited = permits.acquire_owned().await.ok();
        if let Some(gate) = self.gates().get_mut(key) {
            gate.waiting -= 1;
        }
        slot.permit = waited;
        slot.taken_at = std::time::Instant::now();
        Ok(slot)
    }
}

impl Drop for LaneSlot<'_> {
    fn drop(&mut self) {
        let mut gates = self.slots.gates();
        if let Some(gate) = gates.get_mut(&self.key) {
            if self.permit.is_none() {
                // Dropped while waiting (cancelled): leave the line.
                gate.waiting = gate.waiting.saturating_sub(1);
            } else if self.attempted {
                let took = self.taken_at.elapsed();
                gate.attempt_time = (gate.attempt_time * 7 + took) / 8;
            }
            gate.users -= 1;
            if gate.users == 0 && gate.parked_until <= std::time::Instant::now() {
                gates.remove(&self.key);
            }
        }
        drop(self.permit.take());
    }
}

/// The batching reader of what tasks need.
fn loader(store: Arc<dyn DeliveryStore>) -> GroupCommit<DeliveryKey, StoreResult<DeliveryTarget>> {
    GroupCommit::start(RECORD_BATCH, RECORD_BATCHES_IN_FLIGHT, move |keys| {
        let store = store.clone();
        async move {
            let keys = &keys;
            whole_or_one_by_one(keys.len(), |range| store.delivery_targets(&keys[range])).await
        }
    })
}

/// A finished attempt: its record, and its event for the stats role.
struct Finished {
    record: AttemptRecord,
    event: AttemptCompleted,
}

/// The event the stats role counts an attempt from.
fn attempt_event(
    tenant_id: &TenantId,
    event_type: &herald_core::EventTypeName,
    attempt: &Attempt,
    success: bool,
) -> AttemptCompleted {
    AttemptCompleted {
        attempt_id: attempt.id.to_string(),
        tenant_id: tenant_id.to_string(),
        app_id: attempt.app_id.to_string(),
        endpoint_id: attempt.endpoint_id.to_string(),
        event_type: event_type.as_str().to_owned(),
        success,
        status_code: attempt.status_code,
        error_class: attempt.error_class,
        duration_us: attempt.duration_us,
        at_us: attempt.created_at.timestamp_micros(),
    }
}

/// The batching writer of finished attempts. The events of the attempts a
/// batch recorded go to `events` (the stats role) in one publish after the
/// commit. Stats are not worth failing a delivery for: a lost publish is
/// logged and leaves the stats short, never the delivery undone.
fn recorder(
    store: Arc<dyn DeliveryStore>,
    events: Option<Arc<dyn EventBus>>,
) -> GroupCommit<Finished, StoreResult<()>> {
    GroupCommit::start(
        RECORD_BATCH,
        RECORD_BATCHES_IN_FLIGHT,
        move |batch: Vec<Finished>| {
            let (store, events) = (store.clone(), events.clone());
            async move {
                let (records, events_of): (Vec<AttemptRecord>, Vec<AttemptCompleted>) =
                    batch.into_iter().map(|f| (f.record, f.event)).unzip();
                let records = &records;
                let outcomes = whole_or_one_by_one(records.len(), |range| async {
                    let records = &records[range];
                    match store.record_attempts(records).await {
                        // Run again alone after a batch whose commit went
                        // unconfirmed: the row with this attempt's own id is
                        // this attempt, recorded with its delivery's state.
                        Err(e)
                            if records.len() == 1 && e.is_conflict_on("message_attempt_pkey") =>
                        {
                            Ok(vec![()])
                        }
                        // The message was deleted (with its application)
                        // while its attempt ran: nothing is left to record.
                        Err(e) if records.len() == 1 && e.is_missing_reference() => {
                            tracing::debug!(msg_id = %records[0].attempt.msg_id, "message deleted during its attempt");
                            Ok(vec![()])
                        }
                        written => written.map(|()| vec![(); records.len()]),
                    }
                })
                .await;
                if let Some(events) = events {
                    let recorded: Vec<AttemptCompleted> = events_of
                        .into_iter()
                        .zip(&outcomes)
                        .filter(|(_, outcome)| outcome.is_ok())
                        .map(|(event, _)| event)
                        .collect();
                    if let Err(error) = events.publish_attempts(&recorded).await {
                        tracing::warn!(%error, count = recorded.len(), "could not publish attempts for stats");
                    }
                }
                outcomes
            }
        },
    )
}

/// A delivery ready to be attempted: what the attempt needs, loaded (from
/// the task itself and the endpoint cache, or from the database).
struct Ready {
    /// Attempts made before this one.
    attempts_before: u32,
    /// The delivery row asks for a manual attempt (resend/recover).
    manual: bool,
    /// Attempts were made before and none succeeded: a success now is a
    /// recovery (`message.attempt.recovered`).
    failed_before: bool,
    /// When the attempt was due, for the lag metric.
    due: Option<chrono::DateTime<Utc>>,
    event_type: EventTypeName,
    payload: Vec<u8>,
    endpoint: Arc<Endpoint>,
}

/// What loading a task found.
enum Loaded {
    Ready(Ready),
    /// Nothing to attempt: a duplicate of an answered task, a deleted
    /// message, a deleted or disabled endpoint (the delivery is settled).
    Settled,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn DeliveryStore>,
        queue: Arc<dyn Queue>,
        sender: Sender,
        config: WorkerConfig,
    ) -> Self {
        Self {
            loads: loader(store.clone()),
            records: recorder(store.clone(), None),
            store,
            queue,
            sender,
            endpoints: EndpointCache::new(config.endpoint_cache_ttl),
            default_policy: RetryPolicy::server_default(config.schedule.clone()),
            throttle: Arc::new(MemoryThrottle::new()),
            config,
            busy: Lanes::default(),
            tenants: Lanes::default(),
        }
    }

    /// Throttles endpoints with `throttle` (Redis, shared with the other
    /// workers) instead of this process's own limiter.
    pub fn with_throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Announces every recorded attempt on `events` (for the stats role).
    pub fn with_events(mut self, events: Arc<dyn EventBus>) -> Self {
        self.records = recorder(self.store.clone(), Some(events));
        self
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::minutes(5))
    }

    /// Publishes every due delivery until `shutdown`, every `relay_interval`.
    pub async fn run_relay(&self, shutdown: CancellationToken) {
        let mut backoff = self.config.relay_interval;
        loop {
            let outcome = self.relay_once().await;
            let pause = match outcome {
                Ok(n) if n == self.config.relay_batch as usize => Duration::ZERO,
                Ok(_) => {
                    backoff = self.config.relay_interval;
                    self.config.relay_interval
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One relay round: claims due deliveries and publishes them; returns how many.
    pub async fn relay_once(&self) -> Result<usize, DispatchError> {
        let claimed = self
            .store
            .claim_due_deliveries(herald_store::now(), self.lease(), self.config.relay_batch)
            .await?;
        if claimed.is_empty() {
            crate::metrics::relayed(0);
            return Ok(0);
        }
        let tasks: Vec<DeliveryTask> = claimed
            .iter()
            .map(|c| DeliveryTask {
                attempt: c.delivery.attempts + 1,
                manual: c.delivery.manual,
                ..DeliveryTask::new(
                    c.tenant_id.clone(),
                    c.delivery.app_id.clone(),
                    c.delivery.msg_id.clone(),
                    c.delivery.endpoint_id.clone(),
                )
            })
            .collect();
        // If this fails the claims simply expire and the next round retries.
        self.queue.publish_many(&tasks).await?;
        tracing::debug!(count = tasks.len(), "relayed due deliveries");
        crate::metrics::relayed(tasks.len());
        Ok(tasks.len())
    }

    /// Consumes tasks until `shutdown`, at most `concurrency` attempts at a
    /// time, then waits for the attempts in flight.
    pub async fn run_consumer(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), DispatchError> {
        // Room for tasks waiting for a busy endpoint beside those running.
        let prefetch = u16::try_from(self.config.concurrency.saturating_mul(2)).unwrap_or(u16::MAX);
        let mut consumer = self.queue.consume(prefetch).await?;
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        // Tasks taken in at once (running, and waiting in their lanes): a
        // broker message can carry hundreds, so the prefetch alone does not
        // bound them.
        let intake = Arc::new(Semaphore::new(
            self.config
                .concurrency
                .max(1)
                .saturating_mul(INTAKE_PER_SLOT),
        ));
        let tasks = tokio_util::task::TaskTracker::new();
        loop {
            let taken = tokio::select! {
                taken = intake.clone().acquire_owned() => taken,
                _ = shutdown.cancelled() => break,
            };
            let Ok(taken) = taken else { break };
            let received = tokio::select! {
                received = consumer.next() => received,
                _ = shutdown.cancelled() => break,
            };
            let Some(received) = received else { break };
            let dispatcher = self.clone();
            let permits = permits.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _taken = taken;
                let limit = dispatcher.config.endpoint_concurrency.max(1);
                let slot = tokio::select! {
                    slot = dispatcher.busy.take(received.task.endpoint_id.as_str(), limit) => slot,
                    // Not started: unacknowledged, so the broker redelivers it.
                    _ = shutdown.cancelled() => return,
                };
                let slot = match slot {
                    Ok(slot) => slot,
                    Err(park_for) => {
                        // The endpoint is saturated (slow, or many tasks).
                        if dispatcher.park(&received.task, park_for).await {
                            let _ = received.ack().await;
                        }
                        return;
                    }
                };
                let tenant_limit = dispatcher.config.tenant_concurrency.max(1);
                let tenant_slot = tokio::select! {
                    slot = dispatcher.tenants.take(received.task.tenant_id.as_str(), tenant_limit) => slot,
                    _ = shutdown.cancelled() => return,
                };
                let tenant_slot = match tenant_slot {
                    Ok(slot) => slot,
                    Err(park_for) => {
                        // The tenant has its share of the process in flight
                        // and waiting: the rest of its backlog waits in the
                        // database, not in front of other tenants' tasks.
                        drop(slot);
                        if dispatcher.park(&received.task, park_for).await {
                            let _ = received.ack().await;
                        }
                        return;
                    }
                };
                let permit = tokio::select! {
                    permit = permits.acquire_owned() => permit,
                    // Stopping: no new attempt starts; the broker redelivers it.
                    _ = shutdown.cancelled() => return,
                };
                let Ok(_permit) = permit else { return };
                let mut slot = slot;
                let mut tenant_slot = tenant_slot;
                slot.start();
                tenant_slot.start();
                let handled = dispatcher
                    .handle(&received.task, received.redelivered, slot)
                    .await;
                dispatcher.settle(received, handled).await;
            });
        }
        tasks.close();
        tasks.wait().await;
        Ok(())
    }

    /// Parks a task's delivery in the database for `park_for` (the relay
    /// hands it out again then); `true` when the task can be acknowledged.
    /// If the database refuses, the task waits in the queue's delay ladder
    /// instead, as it did before lanes parked.
    async fn park(&self, task: &DeliveryTask, park_for: Duration) -> bool {
        crate::metrics::parked();
        let until = herald_store::now()
            + chrono::Duration::from_std(park_for).unwrap_or(chrono::Duration::hours(1));
        let parked = self
            .store
            .park_delivery(&task.tenant_id, &task.msg_id, &task.endpoint_id, until)
            .await;
        match parked {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, msg_id = %task.msg_id, "could not park the delivery; it waits in the queue");
                self.queue
                    .publish_delayed(task, ENDPOINT_BUSY_DELAY)
                    .await
                    .is_ok()
            }
        }
    }

    /// Acknowledges a handled task, or puts it back for later: at once is
    /// never right, as whatever failed would fail again in a tight loop.
    async fn settle(&self, received: Received, handled: Result<(), DispatchError>) {
        let settled = match handled {
            Ok(()) => Ok(()),
            Err(DispatchError::Unrecorded(error)) => self.unrecorded(&received.task, &error).await,
            Err(error) => {
                tracing::warn!(%error, msg_id = %received.task.msg_id, "task failed; retrying it later");
                // Not requeued at once: a database outage would burn the
                // broker's delivery limit in a tight loop.
                self.queue
                    .publish_delayed(&received.task, TASK_FAILED_DELAY)
                    .await
            }
        };
        match settled {
            Ok(()) => {
                if let Err(error) = received.ack().await {
                    tracing::warn!(%error, "ack failed; the task will be redelivered");
                }
            }
            // Dropping `received` unacknowledged returns it to the queue,
            // which counts it towards the delivery limit.
            Err(error) => {
                tracing::warn!(%error, msg_id = %received.task.msg_id, "could not queue the task again; it is redelivered")
            }
        }
    }

    /// After an attempt that was made but could not be recorded (the database
    /// refused the write): the receiver was called and nothing says so. The
    /// task counts the failure and backs off (`RetrySchedule::decide_unrecorded`);
    /// once the schedule's attempts are used up the delivery ends dead, in the
    /// database as far as it takes the write and in the dead-letter queue in
    /// any case, so it is never lost silently. `Ok` once the task's next step
    /// is queued and the task can be acknowledged.
    async fn unrecorded(
        &self,
        task: &DeliveryTask,
        error: &StoreError,
    ) -> Result<(), herald_queue::QueueError> {
        let task = DeliveryTask {
            record_failures: task.record_failures.saturating_add(1),
            content: None,
            ..task.clone()
        };
        let decision = self.config.schedule.decide_unrecorded(
            task.record_failures,
            &mut rand::rngs::StdRng::from_entropy(),
        );
        if let Decision::RetryAfter(delay) = decision {
            crate::metrics::attempt_unrecorded(false);
            tracing::warn!(
                %error,
                msg_id = %task.msg_id,
                endpoint_id = %task.endpoint_id,
                record_failures = task.record_failures,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "could not record the delivery attempt; sending it again later"
            );
            // Due when the copy below is, so the relay does not hand out
            // another one a lease after the claim.
            self.move_delivery(&task, DeliveryState::Sending, Some(delay))
                .await;
            return self.queue.publish_delayed(&task, delay).await;
        }
        crate::metrics::attempt_unrecorded(true);
        crate::metrics::dead_lettered();
        tracing::error!(
            %error,
            msg_id = %task.msg_id,
            endpoint_id = %task.endpoint_id,
            record_failures = task.record_failures,
            "could not record the delivery attempt again; the delivery is dead"
        );
        // The dead letter first: were the database write first and the
        // publish to fail, the redelivered task would find the delivery dead
        // and be acked without ever reaching the dead-letter queue.
        self.queue.dead_letter(&task, UNRECORDED_REASON).await?;
        self.move_delivery(&task, DeliveryState::Dead, None).await;
        Ok(())
    }

    /// Moves the task's delivery to `state`, due `after` from now, as far as
    /// the database takes the write: a task that could not be recorded may
    /// not be updatable either, and the queue still holds it.
    async fn move_delivery(
        &self,
        task: &DeliveryTask,
        state: DeliveryState,
        after: Option<Duration>,
    ) {
        let update = DeliveryUpdate {
            state,
            next_attempt_at: after.map(|delay| {
                herald_store::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(24))
            }),
        };
        let moved = self
            .store
            .update_delivery(&task.tenant_id, &task.msg_id, &task.endpoint_id, &update)
            .await;
        if let Err(error) = moved {
            tracing::warn!(%error, msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, state = state.as_str(), "could not update the delivery; the queue still holds its task");
        }
    }

    /// What the attempt for `task` needs. A task fresh from the API carries
    /// its message, and its endpoint is usually cached: no database read.
    /// Otherwise — a retry, a relayed or redelivered task (which may be a
    /// duplicate of one already answered), an endpoint not cached — the
    /// delivery, message and endpoint are read, with the other tasks'
    /// arriving meanwhile (three reads for the whole batch).
    async fn load(&self, task: &DeliveryTask, redelivered: bool) -> Result<Loaded, DispatchError> {
        if let (Some(content), false) = (&task.content, redelivered) {
            let cached =
                self.endpoints
                    .get(&task.tenant_id, &task.endpoint_id, task.endpoint_version);
            if let Some(endpoint) = cached {
                if endpoint.disabled && !task.manual {
                    self.settle_delivery(task, DeliveryState::Failed).await?;
                    return Ok(Loaded::Settled);
                }
                return Ok(Loaded::Ready(Ready {
                    attempts_before: task.attempt.saturating_sub(1),
                    manual: task.manual,
                    failed_before: task.attempt > 1,
                    due: Some(content.created_at),
                    event_type: content.event_type.clone(),
                    payload: content.payload.get().as_bytes().to_vec(),
                    endpoint,
                }));
            }
        }
        let key = DeliveryKey {
            tenant_id: task.tenant_id.clone(),
            app_id: task.app_id.clone(),
            msg_id: task.msg_id.clone(),
            endpoint_id: task.endpoint_id.clone(),
        };
        let loaded = self.loads.submit(key).await.unwrap_or_else(|| {
            Err(StoreError::Corrupt(
                "the delivery loader stopped".to_owned(),
            ))
        })?;
        let DeliveryTarget {
            delivery,
            message,
            endpoint,
        } = loaded;
        let Some(delivery) = delivery else {
            return Ok(Loaded::Settled); // The message was deleted with its application.
        };
        let finished = matches!(
            delivery.state,
            DeliveryState::Succeeded | DeliveryState::Failed | DeliveryState::Dead
        );
        // The delivery row, not the task, says whether a manual attempt is
        // wanted: a duplicate of a manual task finds the request answered.
        let manual = delivery.manual;
        if finished && !manual {
            return Ok(Loaded::Settled); // A duplicate of a task already answered.
        }
        // Parked (by its lane, the throttle or the breaker) by another copy
        // of this task, one the broker redelivered after that copy's ack was
        // lost: the relay hands the delivery out when it is due.
        let parked = delivery.state == DeliveryState::Pending
            && delivery.next_attempt_at.is_some_and(|due| due > Utc::now());
        if parked && !manual {
            return Ok(Loaded::Settled);
        }
        // A message without its payload (expunged, or expired: retention
        // leaves in-flight messages alone, but a resend can race it) is
        // never sent as an empty body: the delivery ends failed.
        let (Some(message), Some(endpoint)) = (message, endpoint) else {
            self.settle_delivery(task, DeliveryState::Failed).await?;
            return Ok(Loaded::Settled);
        };
        let Some(payload) = message.payload else {
            self.settle_delivery(task, DeliveryState::Failed).await?;
            return Ok(Loaded::Settled);
        };
        let endpoint = Arc::new(endpoint);
        self.endpoints.put(&task.tenant_id, endpoint.clone());
        if endpoint.disabled && !manual {
            self.settle_delivery(task, DeliveryState::Failed).await?;
            return Ok(Loaded::Settled);
        }
        Ok(Loaded::Ready(Ready {
            attempts_before: delivery.attempts,
            manual,
            failed_before: delivery.attempts > 0 && delivery.state != DeliveryState::Succeeded,
            due: delivery.next_attempt_at,
            event_type: message.event_type,
            payload,
            endpoint,
        }))
    }

    /// Ends the task's delivery in `state` without an attempt.
    async fn settle_delivery(
        &self,
        task: &DeliveryTask,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        let update = DeliveryUpdate {
            state,
            next_attempt_at: None,
        };
        self.store
            .update_delivery(&task.tenant_id, &task.msg_id, &task.endpoint_id, &update)
            .await
    }

    /// Makes one attempt for `task` and records it; `Ok` means the outcome is
    /// committed and the task can be acknowledged. `slot` is held while the
    /// endpoint is being called, and only then.
    #[tracing::instrument(level = "debug", skip_all, fields(msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, attempt = task.attempt))]
    async fn handle(
        &self,
        task: &DeliveryTask,
        redelivered: bool,
        slot: LaneSlot<'_>,
    ) -> Result<(), DispatchError> {
        let malformed = |what: &str| DispatchError::Malformed(format!("invalid {what}"));
        let DeliveryTask {
            tenant_id,
            app_id,
            msg_id,
            ..
        } = task;
        let Loaded::Ready(ready) = self.load(task, redelivered).await? else {
            return Ok(());
        };
        let Ready {
            attempts_before,
            manual,
            failed_before,
            due,
            event_type,
            payload,
            endpoint,
        } = ready;

        // The lane's gates: an open breaker or the throttle defers the
        // delivery without an attempt (a manual one is the tenant's call).
        let breaker = if manual {
            Breaker::Closed
        } else {
            self.breaker(tenant_id, &endpoint).await?
        };
        if let Breaker::Wait(wait) = breaker {
            drop(slot);
            return self.defer(task, wait, "breaker").await;
        }
        if let Some(wait) = self.throttled(tenant_id, &endpoint).await {
            drop(slot);
            return self.defer(task, wait, "throttle").await;
        }

        let now = Utc::now();
        if let Some(due) = due {
            crate::metrics::attempt_started((now - due).to_std().unwrap_or_default());
        }
        let url = Url::parse(endpoint.url.as_str()).map_err(|_| malformed("endpoint url"))?;
        let request = DeliveryRequest {
            url,
            msg_id: msg_id.clone(),
            event_type: event_type.clone(),
            timestamp: now.timestamp(),
            body: payload,
            keys: endpoint
                .secrets
                .valid_at(now)
                .into_iter()
                .map(|secret| secret.signing_key().clone())
                .collect(),
            scheme: endpoint.signature_scheme.clone(),
            headers: endpoint.headers.as_map().clone(),
        };
        let in_flight = crate::metrics::in_flight();
        let mut outcome = self.sender.send(request).await;
        drop(in_flight);
        drop(slot);
        let attempt_number = attempts_before + 1;
        // Endpoint → application → server default, setting by setting.
        let decision = self
            .default_policy
            .inherited(
                endpoint.retry_policy.as_ref(),
                endpoint.app_retry_policy.as_ref(),
            )
            .decide(
                &FinishedAttempt {
                    attempt: attempt_number,
                    succeeded: outcome.success,
                    status: outcome.status_code,
                    retry_after: outcome.retry_after,
                    error_class: outcome.error_class,
                },
                &mut rand::rngs::StdRng::from_entropy(),
            );

        let recorded_at = herald_store::now();
        let (state, retry_in) = decision.next_state(manual);
        let update = DeliveryUpdate {
            state,
            // A retry is handed to the queue's delay ladder; if that copy is
            // lost the relay hands it out again once a lease has passed after it.
            next_attempt_at: retry_in.map(|delay| {
                recorded_at
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(24))
            }),
        };
        let attempt = Attempt {
            id: AttemptId::new(),
            msg_id: msg_id.clone(),
            endpoint_id: endpoint.id.clone(),
            app_id: app_id.clone(),
            url: endpoint.url.as_str().to_owned(),
            status_code: outcome.status_code,
            error_class: outcome.error_class,
            response_body: Some(std::mem::take(&mut outcome.response_body)),
            request_headers: outcome.request_headers.take(),
            response_headers: outcome.response_headers.take(),
            duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
            trigger: if manual {
                AttemptTrigger::Manual
            } else {
                AttemptTrigger::Scheduled
            },
            created_at: recorded_at,
        };
        let duration_ms = attempt.duration_ms();
        // Only failures past the fourth, exhaustion and recovery report
        // anything: a plain success builds nothing.
        let report =
            operational::attempt_event_type(&decision, attempt_number, manual, failed_before)
                .map(|event_type| (event_type, operational::summary(&attempt)));
        let finished = Finished {
            event: attempt_event(tenant_id, &event_type, &attempt, outcome.success),
            record: AttemptRecord {
                tenant_id: tenant_id.clone(),
                attempt,
                update,
            },
        };
        let recorded = self.records.submit(finished).await.unwrap_or_else(|| {
            Err(StoreError::Corrupt(
                "the attempt recorder stopped".to_owned(),
            ))
        });
        recorded.map_err(DispatchError::Unrecorded)?;
        crate::metrics::attempt_recorded(&outcome);
        if !matches!(decision, Decision::DisableEndpoint) {
            let probe = breaker == Breaker::Probe;
            self.track_health(tenant_id, &endpoint, outcome.success, probe)
                .await;
        }
        // Debug, not info: one line per attempt is the attempt log's job, and
        // at thousands of attempts a second the logging would cost a core.
        tracing::debug!(
            status = outcome.status_code,
            success = outcome.success,
            duration_ms,
            "delivery attempt recorded"
        );
        if let Some((event_type, summary)) = report {
            let store = self.store.as_ref();
            operational::report_attempt(store, tenant_id, event_type, msg_id, summary, &endpoint)
                .await;
        }

        match decision {
            Decision::RetryAfter(delay) => {
                crate::metrics::retry_scheduled();
                // Without the content: by the time a retry is due, the
                // delivery row may say otherwise (resent, deleted), so the
                // retry reads it.
                let next = DeliveryTask {
                    attempt: attempt_number + 1,
                    manual: false,
                    content: None,
                    ..task.clone()
                };
                if let Err(error) = self.queue.publish_delayed(&next, delay).await {
                    // The delivery row is due again after its lease: not lost.
                    tracing::warn!(%error, "could not queue the retry; the relay will");
                }
            }
            Decision::Exhausted if manual => {}
            Decision::Exhausted => {
                crate::metrics::dead_lettered();
                if let Err(error) = self.queue.dead_letter(task, "attempts exhausted").await {
                    tracing::warn!(%error, "could not dead-letter the task; the database says dead");
                }
            }
            Decision::DisableEndpoint => {
                self.disable_endpoint(tenant_id, &endpoint, GONE, Some(recorded_at))
                    .await?;
            }
            // Ended failed at once (a 4xx under a `final` policy, an attempt
            // the SSRF guard refused): nothing is retried or dead-lettered;
            // the attempt's class says why.
            Decision::Succeeded | Decision::Final => {}
        }
        Ok(())
    }

    /// Disables an endpoint the receiver asked not to call again (410 Gone)
    /// or that failed for too long (since `fail_since`), saying `reason`. The
    /// tenant hears of it (`endpoint.disabled`, automatic) when this call
    /// disabled it.
    async fn disable_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        reason: &str,
        fail_since: Option<chrono::DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let endpoint_id = &endpoint.id;
        if self
            .store
            .disable_endpoint(tenant_id, &endpoint.app_id, endpoint_id, reason)
            .await?
        {
            crate::metrics::endpoint_disabled();
            tracing::warn!(%endpoint_id, reason, "endpoint disabled");
            let store = self.store.as_ref();
            operational::report_disabled(store, tenant_id, endpoint, fail_since).await;
        }
        Ok(())
    }

    /// What `endpoint`'s circuit breaker lets a delivery do: while it is
    /// open, wait until its time is up; then one delivery claims the probe
    /// and the others wait briefly for its outcome.
    async fn breaker(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
    ) -> Result<Breaker, StoreError> {
        let Some(open_until) = endpoint.health.breaker_open_until else {
            return Ok(Breaker::Closed);
        };
        let now = Utc::now();
        if open_until > now {
            // Spread over a second, so the backlog does not come back at once.
            let spread = Duration::from_millis(rand::random::<u64>() % 1000);
            return Ok(Breaker::Wait(
                (open_until - now).to_std().unwrap_or_default() + spread,
            ));
        }
        let until = now + chrono::Duration::from_std(PROBE_WINDOW).unwrap_or_default();
        let probe = self
            .store
            .claim_breaker_probe(tenant_id, &endpoint.id, now, until)
            .await?;
        if probe {
            self.cache_health(
                tenant_id,
                endpoint,
                EndpointHealth {
                    breaker_open_until: Some(until),
                    ..endpoint.health.clone()
                },
            );
            tracing::info!(endpoint_id = %endpoint.id, "circuit breaker half-open: probing");
            return Ok(Breaker::Probe);
        }
        Ok(Breaker::Wait(PROBE_PARK))
    }

    /// How long a delivery to `endpoint` must wait for its `throttleRate`,
    /// if longer than the lane holds it. A wait within that is taken here,
    /// holding the lane's slot. A limiter that cannot be reached does not
    /// stop deliveries: they go out unthrottled, and it is logged.
    async fn throttled(&self, tenant_id: &TenantId, endpoint: &Endpoint) -> Option<Duration> {
        let rate = endpoint.throttle_rate?;
        let key = format!("{tenant_id}:{}", endpoint.id);
        match self.throttle.reserve(&key, rate, ENDPOINT_BUSY_DELAY).await {
            Ok(Reservation::Granted { after }) => {
                if !after.is_zero() {
                    crate::metrics::throttled();
                    tokio::time::sleep(after).await;
                }
                None
            }
            Ok(Reservation::Full { after }) => {
                crate::metrics::throttled();
                Some(after)
            }
            Err(error) => {
                tracing::warn!(%error, endpoint_id = %endpoint.id, "throttle unavailable; sending unthrottled");
                None
            }
        }
    }

    /// Puts a delivery back for `wait` without an attempt (see `park`).
    async fn defer(
        &self,
        task: &DeliveryTask,
        wait: Duration,
        why: &str,
    ) -> Result<(), DispatchError> {
        tracing::debug!(msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, why, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "delivery deferred");
        if self.park(task, wait).await {
            Ok(())
        } else {
            Err(herald_queue::QueueError::Unavailable(format!(
                "could not defer the delivery ({why})"
            ))
            .into())
        }
    }

    /// Counts an attempt towards its endpoint's health: a success clears a
    /// failing endpoint (and closes its breaker); a failure counts, opens
    /// the breaker after `breaker_failures` in a row (again after a failed
    /// `probe`), and disables the endpoint once it has failed for
    /// `disable_after` and `disable_failures` attempts. Nothing is written
    /// for a success to a healthy endpoint. Health is bookkeeping: a write
    /// that fails is logged, not retried.
    async fn track_health(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        success: bool,
        probe: bool,
    ) {
        let endpoint_id = &endpoint.id;
        let noted = if success {
            if !endpoint.health.is_failing() {
                return;
            }
            self.store
                .endpoint_recovered(tenant_id, endpoint_id)
                .await
                .map(|cleared| {
                    if cleared && endpoint.health.breaker_open_until.is_some() {
                        tracing::info!(%endpoint_id, "circuit breaker closed");
                    }
                    Some(EndpointHealth {
                        disabled_at: endpoint.health.disabled_at,
                        disabled_reason: endpoint.health.disabled_reason.clone(),
                        ..EndpointHealth::default()
                    })
                })
        } else {
            self.failed(tenant_id, endpoint, probe).await
        };
        match noted {
            Ok(Some(health)) => self.cache_health(tenant_id, endpoint, health),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, %endpoint_id, "could not record the endpoint's health")
            }
        }
    }

    /// Keeps `health`, just written, in this process's copy of `endpoint`,
    /// so its next tasks see it before the copy expires.
    fn cache_health(&self, tenant_id: &TenantId, endpoint: &Endpoint, health: EndpointHealth) {
        self.endpoints.put(
            tenant_id,
            Arc::new(Endpoint {
                health,
                ..endpoint.clone()
            }),
        );
    }

    /// A failed attempt's consequences for its endpoint; its health after.
    async fn failed(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        probe: bool,
    ) -> Result<Option<EndpointHealth>, StoreError> {
        let now = Utc::now();
        let Some(mut health) = self
            .store
            .endpoint_failed(tenant_id, &endpoint.id, now)
            .await?
        else {
            return Ok(None);
        };
        let failures = health.consecutive_failures;
        let config = &self.config;
        let failing_for = health
            .failing_since
            .and_then(|since| (now - since).to_std().ok())
            .unwrap_or_default();
        if !config.disable_after.is_zero()
            && failing_for >= config.disable_after
            && failures >= config.disable_failures
        {
            let reason = format!(
                "failing for {} s ({failures} attempts in a row) since {}",
                failing_for.as_secs(),
                health
                    .failing_since
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            );
            self.disable_endpoint(tenant_id, endpoint, &reason, health.failing_since)
                .await?;
            return Ok(None);
        }
        // Attempts that were in flight when the breaker opened fail into an
        // open breaker: counted, but they do not move its probe.
        let closed = health.breaker_open_until.is_none();
        if config.breaker_failures > 0 && failures >= config.breaker_failures && (closed || probe) {
            // The longer the endpoint has been failing, the longer until the
            // next probe: half that time (so probes come at about 1.5× the
            // time failing so far, exponentially apart), within the bounds.
            let cooldown = (failing_for / 2).clamp(
                config.breaker_cooldown,
                MAX_BREAKER_COOLDOWN.max(config.breaker_cooldown),
            );
            let until = now + chrono::Duration::from_std(cooldown).unwrap_or_default();
            self.store
                .open_breaker(tenant_id, &endpoint.id, until)
                .await?;
            crate::metrics::breaker_opened();
            tracing::warn!(endpoint_id = %endpoint.id, failures, cooldown_s = cooldown.as_secs(), "circuit breaker open");
            health.breaker_open_until = Some(until);
        }
        Ok(Some(health))
    }
}
