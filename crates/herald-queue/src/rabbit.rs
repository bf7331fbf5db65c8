//! RabbitMQ [`Queue`] over lapin.
//!
//! Topology, every name prefixed (default `herald`), all durable:
//!
//! | name | kind | role |
//! |---|---|---|
//! | `{prefix}.work` | direct exchange | every publish goes here, routed by key |
//! | `{prefix}.deliveries` | quorum queue, key `deliveries` | the work queue; `x-delivery-limit` dead-letters poison tasks to key `dead` |
//! | `{prefix}.dead` | quorum queue, key `dead` | dead letters: poison tasks and exhausted deliveries, without their payloads; bounded (`x-max-length`, `x-max-length-bytes`, `x-overflow: drop-head`) and drained by the worker into the database, which lists and redrives them |
//! | `{prefix}.delay.{1s…10h}` | quorum queues, key `delay.{rung}` | the delay ladder (see [`crate::delay`]); TTL expiry dead-letters to key `deliveries` |
//! | `{prefix}.attempts` | fanout exchange | the [`EventBus`]: every [`AttemptCompleted`] goes here |
//! | `{prefix}.stats` | quorum queue bound to `{prefix}.attempts` | the stats service's events; `x-max-length` with `x-overflow: reject-publish` |
//!
//! The event side is a fanout exchange so that other consumers can later bind
//! queues of their own and each get every event; the stats service's queue is
//! one such binding, shared by competing stats processes. It is bounded
//! ([`RabbitOptions::stats_max_length`], default [`DEFAULT_STATS_MAX_LENGTH`]):
//! with the stats service down, events pile up only to that length, after which
//! the broker refuses (nacks) new ones and `publish_attempt` fails at once with
//! [`QueueError::Unavailable`] rather than retrying — those events are not
//! counted, but the broker's memory and disk are safe and the worker is not
//! held up. (Quorum queues apply the limit approximately: they start refusing
//! once over it, and accept again once the backlog has shrunk.) The queue has no
//! dead-letter exchange and no delivery limit: an event goes away only when a
//! stats consumer acks it, and one that is not an event is dropped with an error
//! in the log.
//!
//! The dead-letter queue is a hand-over, not a store: the database's `dead`
//! deliveries are the dead-letter view, and the worker's drain
//! ([`Queue::take_dead_letters`]) takes letters out, makes sure their
//! deliveries say `dead`, then acks. Bounded by
//! [`RabbitOptions::dead_max_length`] (default [`DEFAULT_DEAD_MAX_LENGTH`])
//! and [`DEFAULT_DEAD_MAX_BYTES`], with the oldest letters dropped past the
//! bound, it cannot fill the broker while no worker drains it; what it drops
//! was already dead in the database, or is still `sending` there and comes
//! back through the relay after its lease.
//!
//! Queue types: the broker here is RabbitMQ 3.10, the first release whose quorum
//! queues support message TTL and at-least-once dead-lettering
//! (`x-dead-letter-strategy: at-least-once`, which needs `x-overflow:
//! reject-publish` and the `stream_queue` feature flag). So every queue,
//! including the delay rungs, is a replicated quorum queue: a task in a delay
//! queue survives a node loss, and the hop out of it is not lost if the broker
//! fails halfway (with classic queues or at-most-once dead-lettering a task
//! could vanish between the rung and the work queue). Older brokers reject or
//! ignore these arguments, so Herald needs RabbitMQ ≥ 3.10.
//!
//! Reliability: messages are persistent (delivery mode 2) and every publish
//! waits for the publisher confirm; acks are manual. Publishing shares one
//! connection per [`RabbitQueue`]; each consumer has its own connection, so
//! dropping a consumer closes it and the broker redelivers what it held. Lost
//! connections are re-opened with capped exponential backoff and the topology is
//! re-declared each time.
//!
//! No wait on lapin in publishing, consuming or settling is left unbounded
//! ([`RabbitOptions::settle_timeout`], `connect_timeout`, `publish_timeout`):
//! lapin 4 can lose a request made in the instant its connection dies, and its
//! future then never completes (see `RabbitAcker`). A worker awaiting such an
//! ack would hold its slot for ever and never ask the consumer for the next
//! task, so never learn that the connection is gone — stuck after a broker
//! restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delay::{self, DUE_HEADER};
use crate::events::{EventAcker, SharedAcker};
use crate::{
    backoff_delay, Acker, AttemptCompleted, Consumer, DeadAcker, DeadLetter, DeadLetterBatch,
    DeliveryTask, EventBus, EventConsumer, Queue, QueueDepths, QueueError, Received, ReceivedEvent,
    DEFAULT_DELIVERY_LIMIT,
};

/// Routing key of the work queue.
const KEY_DELIVERIES: &str = "deliveries";
/// Routing key of the dead-letter queue.
const KEY_DEAD: &str = "dead";
/// Header carrying the reason given to [`Queue::dead_letter`].
const REASON_HEADER: &str = "x-herald-dead-reason";
/// Header of a task that was returned on its own out of a batch (see
/// [`PartAcker`]): it counts as redelivered.
const RETURNED_HEADER: &str = "x-herald-returned";
/// The most tasks one broker message carries, and the payload bytes past
/// which a batch is split: a consumer holds up to its prefetch of them.
const MAX_TASKS_PER_MESSAGE: usize = 512;
const MAX_PAYLOAD_PER_MESSAGE: usize = 1 << 20;
/// AMQP reply code for a normal close.
const REPLY_SUCCESS: u16 = 200;
/// Routing key of events; the fanout exchange ignores it.
const KEY_ATTEMPT: &str = "attempt.completed";

/// Default [`RabbitOptions::settle_timeout`]: generous for a write to a local
/// socket buffer, short enough that a lost ack costs a worker slot only briefly.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `x-max-length` of `{prefix}.stats`: at a few hundred bytes per event,
/// a backlog of well under a gigabyte.
pub const DEFAULT_STATS_MAX_LENGTH: u32 = 1_000_000;

/// Default `x-max-length` of `{prefix}.dead`: letters carry ids, not
/// payloads, so this is tens of megabytes; the drain keeps it near empty.
pub const DEFAULT_DEAD_MAX_LENGTH: u32 = 100_000;

/// `x-max-length-bytes` of `{prefix}.dead`: a poison batch the broker
/// dead-letters itself still carries its payloads (up to 1 MiB a message).
pub const DEFAULT_DEAD_MAX_BYTES: u32 = 256 * 1024 * 1024;

/// Settings of a [`RabbitQueue`].
#[derive(Clone, Debug)]
pub struct RabbitOptions {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// `x-delivery-limit` of the work queue: returns a task survives before the
    /// broker dead-letters it. Changing it for existing queues needs a policy or
    /// re-creating them, since RabbitMQ refuses to re-declare with other arguments.
    pub delivery_limit: u32,
    /// `x-max-length` of the stats queue `{prefix}.stats`: events it holds
    /// before the broker refuses new ones (see [`crate::events`]). Like
    /// `delivery_limit`, changing it for an existing queue needs a policy or
    /// re-creating the queue.
    pub stats_max_length: u32,
    /// `x-max-length` of the dead-letter queue `{prefix}.dead`: letters it
    /// holds before it drops its oldest (`x-overflow: drop-head`). Like
    /// `stats_max_length`, changing it for an existing queue needs a policy
    /// or re-creating the queue.
    pub dead_max_length: u32,
    /// How long a publish keeps retrying over reconnects before it fails.
    pub publish_timeout: Duration,
    /// Longest wait for a TCP connection and AMQP handshake, and again for
    /// what follows before the connection is used (channel, topology,
    /// subscription); also bounds closing a connection and counting the queues.
    pub connect_timeout: Duration,
    /// Longest wait for an ack, nack or reject to be handed to the connection
    /// (lapin does not wait for the broker, so this normally takes well under a
    /// millisecond). Past it the delivery is reported stale and the consumer's
    /// connection is re-opened, so the broker redelivers what it held.
    pub settle_timeout: Duration,
    /// First reconnect backoff; it doubles per failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Cap of the reconnect backoff.
    pub reconnect_max: Duration,
}

impl RabbitOptions {
    /// Default options for `url` with the `herald` prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "herald".to_owned(),
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            stats_max_length: DEFAULT_STATS_MAX_LENGTH,
            dead_max_length: DEFAULT_DEAD_MAX_LENGTH,
            publish_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

/// The names of everything a [`RabbitQueue`] declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The direct exchange all publishes go to: `{prefix}.work`.
    pub work_exchange: String,
    /// The work queue: `{prefix}.deliveries`.
    pub deliveries: String,
    /// The dead-letter queue: `{prefix}.dead`.
    pub dead: String,
    /// The delay ladder, shortest rung first: `{prefix}.delay.1s` … `{prefix}.delay.10h`.
    pub delay_queues: Vec<String>,
    /// The fanout exchange events are published to: `{prefix}.attempts`.
    pub attempts_exchange: String,
    /// The stats service's event queue, bound to `attempts_exchange`: `{prefix}.stats`.
    pub stats: String,
}

impl Topology {
    /// The names used with `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            work_exchange: format!("{prefix}.work"),
            deliveries: format!("{prefix}.deliveries"),
            dead: format!("{prefix}.dead"),
            delay_queues: delay::RUNGS
                .iter()
                .map(|rung| format!("{prefix}.delay.{}", delay::rung_label(*rung)))
                .collect(),
            attempts_exchange: format!("{prefix}.attempts"),
            stats: format!("{prefix}.stats"),
        }
    }

    /// Every queue name, work queue first.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        [
            self.deliveries.as_str(),
            self.dead.as_str(),
            self.stats.as_str(),
        ]
        .into_iter()
        .chain(self.delay_queues.iter().map(String::as_str))
    }

    /// Every exchange name: the work exchange, then the events' exchange.
    pub fn exchanges(&self) -> impl Iterator<Item = &str> {
        [self.work_exchange.as_str(), self.attempts_exchange.as_str()].into_iter()
    }
}

fn delay_key(rung: Duration) -> String {
    format!("delay.{}", delay::rung_label(rung))
}

/// The delivery queue on RabbitMQ. Cloning shares the publishing connection.
#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    options: RabbitOptions,
    topology: Topology,
    publisher: tokio::sync::Mutex<Option<PublisherLink>>,
    generation: AtomicU64,
    shutdown: CancellationToken,
}

/// The shared publishing connection and its confirm-mode channel.
struct PublisherLink {
    // Shared so that `depths` can open a channel on it without holding the
    // publisher lock across that wait.
    connection: Arc<Connection>,
    channel: Channel,
    generation: u64,
}

/// The exchange a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    /// `{prefix}.work`: tasks.
    Work,
    /// `{prefix}.attempts`: events.
    Attempts,
}

/// One message ready to publish.
struct Outgoing {
    exchange: Exchange,
    routing_key: String,
    body: Vec<u8>,
    headers: FieldTable,
    /// What the message carries, for logs: a task's message id or an event's attempt id.
    id: String,
}

impl Outgoing {
    /// Tasks for the work exchange, as one broker message (see [`crate::wire`]).
    fn new(tasks: &[DeliveryTask], routing_key: String) -> Result<Self, QueueError> {
        Ok(Self {
            exchange: Exchange::Work,
            routing_key,
            body: crate::wire::encode(tasks).map_err(|e| QueueError::Encode(e.to_string()))?,
            headers: FieldTable::default(),
            id: tasks
                .first()
                .map(|task| task.msg_id.to_string())
                .unwrap_or_default(),
        })
    }

    /// `tasks` as few broker messages as the size limits allow.
    fn batches(tasks: &[DeliveryTask], routing_key: &str) -> Result<Vec<Self>, QueueError> {
        let mut messages = Vec::new();
        let mut start = 0;
        let mut bytes = 0;
        for (index, task) in tasks.iter().enumerate() {
            let size = task.content.as_ref().map_or(0, |c| c.payload.get().len());
            if index > start
                && (index - start >= MAX_TASKS_PER_MESSAGE
                    || bytes + size > MAX_PAYLOAD_PER_MESSAGE)
            {
                messages.push(Self::new(&tasks[start..index], routing_key.to_owned())?);
                (start, bytes) = (index, 0);
            }
            bytes += size;
        }
        if start < tasks.len() {
            messages.push(Self::new(&tasks[start..], routing_key.to_owned())?);
        }
        Ok(messages)
    }

    /// An event for the attempts exchange.
    /// Events for the stats queue: one event as a JSON object, several as a
    /// JSON array of them (consumers read both).
    fn events(events: &[AttemptCompleted]) -> Result<Self, QueueError> {
        let body = match events {
            [one] => serde_json::to_vec(one),
            many => serde_json::to_vec(many),
        };
        Ok(Self {
            exchange: Exchange::Attempts,
            routing_key: KEY_ATTEMPT.to_owned(),
            body: body.map_err(|e| QueueError::Encode(e.to_string()))?,
            headers: FieldTable::default(),
            id: events
                .first()
                .map(|e| e.attempt_id.clone())
                .unwrap_or_default(),
        })
    }

    fn header(mut self, name: &str, value: AMQPValue) -> Self {
        self.headers.insert(name.into(), value);
        self
    }
}

impl RabbitQueue {
    /// Connects to `url` and declares the topology named by `prefix` (normally
    /// `herald`). Fails if the broker is unreachable now; later connection losses
    /// are recovered from automatically.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        Self::connect_with(RabbitOptions {
            prefix: prefix.to_owned(),
            ..RabbitOptions::new(url)
        })
        .await
    }

    /// Like [`RabbitQueue::connect`] with every setting explicit.
    pub async fn connect_with(options: RabbitOptions) -> Result<Self, QueueError> {
        let inner = Arc::new(Inner {
            topology: Topology::new(&options.prefix),
            options,
            publisher: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        inner.publisher().await?;
        tracing::info!(prefix = %inner.options.prefix, "connected to rabbitmq");
        Ok(Self { inner })
    }

    /// The names this queue declared.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Counts the messages in every queue of the topology with passive
    /// declares, on a channel of the publisher's connection when it is up (a
    /// call every few seconds should not open a connection each time), else on
    /// a connection of its own.
    async fn count_messages(&self) -> Result<QueueDepths, QueueError> {
        let failed = |e: lapin::Error| {
            QueueError::Unavailable(format!("failed to count queued messages: {e}"))
        };
        let within = self.inner.options.connect_timeout;
        let timed_out = || QueueError::Unavailable("timed out counting queued messages".to_owned());
        // The lock is released before any wait on the broker: publishers queue
        // behind it.
        let shared = self
            .inner
            .publisher
            .lock()
            .await
            .as_ref()
            .map(|link| Arc::clone(&link.connection));
        if let Some(connection) = shared {
            let counted = tokio::time::timeout(within, async {
                // No channel: that connection is going away; a connection of
                // our own may do.
                let channel = connection.create_channel().await.ok()?;
                let result = self.inner.count_messages(&channel).await;
                let _ = channel.close(REPLY_SUCCESS, "done".into()).await;
                Some(result)
            })
            .await;
            match counted {
                Ok(Some(result)) => return result.map_err(failed),
                Ok(None) => {}
                Err(_) => return Err(timed_out()),
            }
        }
        let connection = self.inner.open_connection("depths").await?;
        let counted = tokio::time::timeout(within, async {
            let channel = connection.create_channel().await?;
            self.inner.count_messages(&channel).await
        })
        .await;
        close_connection(&connection, "done", within).await;
        counted.map_err(|_| timed_out())?.map_err(failed)
    }
}

impl std::fmt::Debug for RabbitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitQueue")
            .field("prefix", &self.inner.options.prefix)
            .field("closed", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Inner {
    async fn open_connection(&self, role: &str) -> Result<Connection, QueueError> {
        let name = format!("herald-queue {} {role}", self.options.prefix);
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connect = Connection::connect(&self.options.url, properties);
        match tokio::time::timeout(self.options.connect_timeout, connect).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(QueueError::Unavailable(format!(
                "failed to connect to rabbitmq: {e}"
            ))),
            Err(_) => Err(QueueError::Unavailable(
                "timed out connecting to rabbitmq".to_owned(),
            )),
        }
    }

    /// Runs `setup` on a fresh connection, bounded by `connect_timeout` like
    /// the connection itself: lapin can leave a request made as the connection
    /// dies waiting for ever.
    async fn set_up<T>(
        &self,
        what: &str,
        setup: impl std::future::Future<Output = Result<T, QueueError>>,
    ) -> Result<T, QueueError> {
        tokio::time::timeout(self.options.connect_timeout, setup)
            .await
            .unwrap_or_else(|_| {
                Err(QueueError::Unavailable(format!(
                    "timed out setting up the {what} connection"
                )))
            })
    }

    /// Declares the exchange, queues and bindings. Idempotent; RabbitMQ refuses
    /// (PRECONDITION_FAILED) if a queue exists with other arguments.
    async fn declare_topology(&self, channel: &Channel) -> Result<(), QueueError> {
        let topology = &self.topology;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let to_topology = |what: &str, e: lapin::Error| {
            QueueError::Topology(format!("failed to declare {what}: {e}"))
        };

        channel
            .exchange_declare(
                topology.work_exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| to_topology(&topology.work_exchange, e))?;

        let mut queues = vec![
            (
                topology.deliveries.clone(),
                KEY_DELIVERIES.to_owned(),
                self.dead_lettering(KEY_DEAD).insert_chain(
                    "x-delivery-limit",
                    AMQPValue::LongInt(
                        i32::try_from(self.options.delivery_limit).unwrap_or(i32::MAX),
                    ),
                ),
            ),
            (
                topology.dead.clone(),
                KEY_DEAD.to_owned(),
                quorum_arguments()
                    .insert_chain(
                        "x-max-length",
                        AMQPValue::LongInt(
                            i32::try_from(self.options.dead_max_length).unwrap_or(i32::MAX),
                        ),
                    )
                    .insert_chain(
                        "x-max-length-bytes",
                        AMQPValue::LongInt(
                            i32::try_from(DEFAULT_DEAD_MAX_BYTES).unwrap_or(i32::MAX),
                        ),
                    )
                    .insert_chain("x-overflow", AMQPValue::LongString("drop-head".into())),
            ),
        ];
        for (rung, name) in delay::RUNGS.iter().zip(&topology.delay_queues) {
            let ttl_ms = i32::try_from(rung.as_millis()).unwrap_or(i32::MAX);
            queues.push((
                name.clone(),
                delay_key(*rung),
                self.dead_lettering(KEY_DELIVERIES)
                    .insert_chain("x-message-ttl", AMQPValue::LongInt(ttl_ms)),
            ));
        }
        for (name, key, arguments) in queues {
            channel
                .queue_declare(name.as_str().into(), durable, arguments)
                .await
                .map_err(|e| {
                    // Herald before the bound declared it without one, and
                    // RabbitMQ does not change a queue's arguments.
                    let hint = if name == topology.dead {
                        format!(
                            " (if an older Herald declared {name} without its bound, delete it \
                             with `rabbitmqctl delete_queue {name}`: the database keeps every \
                             dead delivery)"
                        )
                    } else {
                        String::new()
                    };
                    QueueError::Topology(format!("failed to declare {name}: {e}{hint}"))
                })?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    topology.work_exchange.as_str().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| to_topology(&name, e))?;
        }

        // The event side: a fanout exchange and the stats service's bounded queue.
        channel
            .exchange_declare(
                topology.attempts_exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| to_topology(&topology.attempts_exchange, e))?;
        let stats_arguments = quorum_arguments()
            .insert_chain(
                "x-max-length",
                AMQPValue::LongInt(
                    i32::try_from(self.options.stats_max_length).unwrap_or(i32::MAX),
                ),
            )
            .insert_chain("x-overflow", AMQPValue::LongString("reject-publish".into()));
        channel
            .queue_declare(topology.stats.as_str().into(), durable, stats_arguments)
            .await
            .map_err(|e| to_topology(&topology.stats, e))?;
        channel
            .queue_bind(
                topology.stats.as_str().into(),
                topology.attempts_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| to_topology(&topology.stats, e))?;
        Ok(())
    }

    /// Quorum-queue arguments that dead-letter into the work exchange with `key`,
    /// at least once.
    fn dead_lettering(&self, key: &str) -> FieldTable {
        let mut arguments = quorum_arguments();
        let text = |s: &str| AMQPValue::LongString(s.into());
        arguments.insert(
            "x-dead-letter-exchange".into(),
            text(&self.topology.work_exchange),
        );
        arguments.insert("x-dead-letter-routing-key".into(), text(key));
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        // At-least-once dead-lettering requires reject-publish overflow.
        arguments.insert("x-overflow".into(), text("reject-publish"));
        arguments
    }

    /// The publishing channel, (re)connecting if needed.
    async fn publisher(&self) -> Result<(Channel, u64), QueueError> {
        let mut link = self.publisher.lock().await;
        if let Some(current) = link.as_ref() {
            if current.channel.status().connected() {
                return Ok((current.channel.clone(), current.generation));
            }
        }
        if self.shutdown.is_cancelled() {
            return Err(QueueError::Closed);
        }
        *link = None;
        let connection = self.open_connection("publisher").await?;
        let channel = self
            .set_up("publisher", async {
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|e| QueueError::Unavailable(format!("failed to open channel: {e}")))?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| {
                        QueueError::Unavailable(format!("failed to enable confirms: {e}"))
                    })?;
                self.declare_topology(&channel).await?;
                Ok(channel)
            })
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if generation > 1 {
            tracing::info!(prefix = %self.options.prefix, generation, "publisher reconnected");
        }
        *link = Some(PublisherLink {
            connection: Arc::new(connection),
            channel: channel.clone(),
            generation,
        });
        Ok((channel, generation))
    }

    /// Drops the publishing connection if it is still `generation`, so the next
    /// publish opens a fresh one.
    async fn invalidate_publisher(&self, generation: u64) {
        let old = {
            let mut link = self.publisher.lock().await;
            if link.as_ref().is_some_and(|l| l.generation == generation) {
                link.take()
            } else {
                None
            }
        };
        // Closed outside the lock: other publishers need not wait for it.
        if let Some(old) = old {
            close_connection(
                &old.connection,
                "reconnecting",
                self.options.connect_timeout,
            )
            .await;
        }
    }

    /// Publishes every message and waits for all confirms, retrying the ones not
    /// confirmed on a fresh channel until `publish_timeout` has passed. With
    /// `refusal_is_final`, a message the broker nacks (for events: the bounded
    /// stats queue is full) fails the publish at once instead of being retried.
    async fn publish_all(
        &self,
        outgoing: &[Outgoing],
        refusal_is_final: bool,
    ) -> Result<(), QueueError> {
        let deadline = Instant::now() + self.options.publish_timeout;
        let mut pending: Vec<&Outgoing> = outgoing.iter().collect();
        let mut failures = 0u32;
        loop {
            if self.shutdown.is_cancelled() {
                return Err(QueueError::Closed);
            }
            // Bounded by the deadline too: connecting to a black-holed broker can
            // take `connect_timeout`, once per waiting publisher.
            let publisher = tokio::time::timeout_at(deadline, self.publisher())
                .await
                .unwrap_or_else(|_| {
                    Err(QueueError::Unavailable(
                        "timed out waiting for a rabbitmq connection".to_owned(),
                    ))
                });
            let error = match publisher {
                Ok((channel, generation)) => {
                    let round = self.publish_on(&channel, &pending, deadline).await;
                    if round.unconfirmed.is_empty() {
                        return Ok(());
                    }
                    if round.broken {
                        self.invalidate_publisher(generation).await;
                    }
                    if round.refused && refusal_is_final {
                        tracing::warn!(
                            refused = round.unconfirmed.len(),
                            error = %round.error,
                            "rabbitmq refused a publish"
                        );
                        return Err(round.error);
                    }
                    pending = round.unconfirmed;
                    round.error
                }
                Err(e) => e,
            };
            failures += 1;
            let wait = backoff_delay(
                failures,
                self.options.reconnect_min,
                self.options.reconnect_max,
            );
            if Instant::now() + wait > deadline {
                tracing::error!(
                    unconfirmed = pending.len(),
                    error = %error,
                    "giving up publishing to rabbitmq"
                );
                return Err(error);
            }
            tracing::warn!(
                unconfirmed = pending.len(),
                retry_in_ms = wait.as_millis() as u64,
                error = %error,
                "publish to rabbitmq failed; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => return Err(QueueError::Closed),
            }
        }
    }

    /// One round of [`Inner::publish_all`] on `channel`.
    async fn publish_on<'a>(
        &self,
        channel: &Channel,
        pending: &[&'a Outgoing],
        deadline: Instant,
    ) -> PublishRound<'a> {
        let mut unconfirmed = Vec::new();
        let mut error = QueueError::Unavailable("publish not confirmed".to_owned());
        let mut broken = false;
        let mut refused = false;
        let mut confirms = Vec::with_capacity(pending.len());
        for (index, message) in pending.iter().enumerate() {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(message.headers.clone());
            let publish = channel.basic_publish(
                self.exchange_name(message.exchange).into(),
                message.routing_key.as_str().into(),
                // Mandatory: an unroutable message (queue deleted) comes back
                // instead of being confirmed and silently dropped.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            );
            // Bounded like the confirms: the frames may never be written if the
            // connection dies under them.
            let sent = match tokio::time::timeout_at(deadline, publish).await {
                Ok(sent) => sent.map_err(|e| format!("failed to publish: {e}")),
                Err(_) => Err("timed out handing a publish to the connection".to_owned()),
            };
            match sent {
                Ok(confirm) => confirms.push((*message, confirm)),
                Err(failure) => {
                    error = QueueError::Unavailable(failure);
                    broken = true;
                    unconfirmed.extend_from_slice(&pending[index..]);
                    break;
                }
            }
        }
        let waits = confirms.into_iter().map(|(message, confirm)| async move {
            let outcome = tokio::time::timeout_at(deadline, confirm).await;
            (message, outcome)
        });
        for (message, outcome) in futures::future::join_all(waits).await {
            let failure = match outcome {
                Ok(Ok(Confirmation::Ack(None))) => continue,
                Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                    // Unroutable: the topology is gone; a fresh link re-declares it.
                    broken = true;
                    format!("message returned as unroutable: {}", returned.reply_text)
                }
                Ok(Ok(Confirmation::Nack(_))) => {
                    refused = true;
                    match message.exchange {
                        Exchange::Work => "broker refused the message (nack)".to_owned(),
                        Exchange::Attempts => format!(
                            "broker refused the event (nack); is {} full?",
                            self.topology.stats
                        ),
                    }
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    broken = true;
                    "channel is not in confirm mode".to_owned()
                }
                Ok(Err(e)) => {
                    broken = true;
                    format!("publish confirm failed: {e}")
                }
                Err(_) => {
                    broken = true;
                    "timed out waiting for publish confirm".to_owned()
                }
            };
            tracing::debug!(id = %message.id, routing_key = %message.routing_key, %failure, "publish not confirmed");
            error = QueueError::Unavailable(failure);
            unconfirmed.push(message);
        }
        PublishRound {
            unconfirmed,
            error,
            broken,
            refused,
        }
    }

    fn exchange_name(&self, exchange: Exchange) -> &str {
        match exchange {
            Exchange::Work => &self.topology.work_exchange,
            Exchange::Attempts => &self.topology.attempts_exchange,
        }
    }

    async fn count_messages(&self, channel: &Channel) -> Result<QueueDepths, lapin::Error> {
        let count = |name: &str| {
            let channel = channel.clone();
            let name = name.to_owned();
            async move {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                let queue = channel
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await?;
                Ok::<u64, lapin::Error>(u64::from(queue.message_count()))
            }
        };
        let mut delayed = 0;
        for rung in &self.topology.delay_queues {
            delayed += count(rung).await?;
        }
        Ok(QueueDepths {
            ready: count(&self.topology.deliveries).await?,
            delayed,
            dead: count(&self.topology.dead).await?,
            stats_events: count(&self.topology.stats).await?,
        })
    }

    /// Gets up to `max` letters from `{prefix}.dead` on `channel`, unacked;
    /// returns them with the acker of the last message got, whose multiple
    /// ack settles them all. A message that is not a task is logged and
    /// settled with the rest (dropped), as it could never be redriven.
    async fn take_dead_letters(
        &self,
        channel: &Channel,
        max: usize,
    ) -> Result<(Vec<DeadLetter>, Option<lapin::Acker>), lapin::Error> {
        let mut letters = Vec::new();
        let mut last = None;
        while letters.len() < max {
            let Some(message) = channel
                .basic_get(
                    self.topology.dead.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await?
            else {
                break;
            };
            let delivery = message.delivery;
            match crate::wire::decode(&delivery.data) {
                Ok(tasks) => {
                    let reason = dead_reason(&delivery.properties);
                    letters.extend(tasks.into_iter().map(|task| DeadLetter {
                        task,
                        reason: reason.clone(),
                    }));
                }
                Err(e) => tracing::error!(
                    error = %e,
                    body = %String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(512)]),
                    "dropping a dead letter that is not a delivery task"
                ),
            }
            last = Some(delivery.acker);
        }
        Ok((letters, last))
    }
}

/// What one round of publishing left over.
struct PublishRound<'a> {
    /// Messages not confirmed, to retry.
    unconfirmed: Vec<&'a Outgoing>,
    /// The last failure.
    error: QueueError,
    /// Whether the channel looks broken, so the next round needs a fresh one.
    broken: bool,
    /// Whether the broker nacked a message.
    refused: bool,
}

trait InsertChain {
    fn insert_chain(self, key: &str, value: AMQPValue) -> Self;
}

impl InsertChain for FieldTable {
    fn insert_chain(mut self, key: &str, value: AMQPValue) -> Self {
        self.insert(key.into(), value);
        self
    }
}

fn quorum_arguments() -> FieldTable {
    FieldTable::default().insert_chain("x-queue-type", AMQPValue::LongString("quorum".into()))
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn as_i64(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Why a message is in the dead-letter queue: Herald's own reason, else the
/// broker's (`x-first-death-reason`, e.g. `delivery_limit` or `rejected`).
fn dead_reason(properties: &BasicProperties) -> String {
    header(properties, REASON_HEADER)
        .or_else(|| header(properties, "x-first-death-reason"))
        .and_then(as_text)
        .unwrap_or_else(|| "unknown".to_owned())
}

#[async_trait]
impl Queue for RabbitQueue {
    async fn depths(&self) -> Result<QueueDepths, QueueError> {
        self.count_messages().await
    }

    #[tracing::instrument(skip_all, fields(msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, attempt = task.attempt))]
    async fn publish(&self, task: &DeliveryTask) -> Result<(), QueueError> {
        let message = Outgoing::new(std::slice::from_ref(task), KEY_DELIVERIES.to_owned())?;
        self.inner
            .publish_all(std::slice::from_ref(&message), false)
            .await
    }

    #[tracing::instrument(skip_all, fields(tasks = tasks.len()))]
    async fn publish_many(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError> {
        let messages = Outgoing::batches(tasks, KEY_DELIVERIES)?;
        self.inner.publish_all(&messages, false).await
    }

    #[tracing::instrument(skip_all, fields(msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, attempt = task.attempt, delay_ms = delay.as_millis() as u64))]
    async fn publish_delayed(
        &self,
        task: &DeliveryTask,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if delay.is_zero() {
            return self.publish(task).await;
        }
        let due_ms = delay::due_unix_ms(delay);
        let message = Outgoing::new(
            std::slice::from_ref(task),
            delay_key(delay::rung_for(delay)),
        )?
        .header(DUE_HEADER, AMQPValue::LongLongInt(due_ms));
        self.inner
            .publish_all(std::slice::from_ref(&message), false)
            .await
    }

    #[tracing::instrument(skip_all, fields(msg_id = %task.msg_id, endpoint_id = %task.endpoint_id, attempt = task.attempt))]
    async fn dead_letter(&self, task: &DeliveryTask, reason: &str) -> Result<(), QueueError> {
        // Without the message content: the letter names a delivery, and the
        // database holds its message.
        let task = DeliveryTask {
            content: None,
            ..task.clone()
        };
        let message = Outgoing::new(std::slice::from_ref(&task), KEY_DEAD.to_owned())?
            .header(REASON_HEADER, AMQPValue::LongString(reason.into()));
        self.inner
            .publish_all(std::slice::from_ref(&message), false)
            .await
    }

    async fn take_dead_letters(&self, max: usize) -> Result<DeadLetterBatch, QueueError> {
        let inner = &self.inner;
        let failed =
            |e: lapin::Error| QueueError::Unavailable(format!("failed to read dead letters: {e}"));
        // A channel of the publisher's connection when it is up (the drain
        // runs every few seconds and should not open a connection each
        // time), else a connection of its own. The lock is released before
        // any wait on the broker.
        let shared = inner
            .publisher
            .lock()
            .await
            .as_ref()
            .map(|link| Arc::clone(&link.connection));
        let own = match shared {
            Some(_) => None,
            None => Some(inner.open_connection("dead-letters").await?),
        };
        // Bounded like a connection's set-up: on a timeout the channel is
        // closed and whatever it got goes back to the queue unacked.
        let taken = inner
            .set_up("dead-letters", async {
                let channel = match (&own, &shared) {
                    (Some(connection), _) => {
                        let channel = connection.create_channel().await.map_err(failed)?;
                        inner.declare_topology(&channel).await?;
                        channel
                    }
                    (None, Some(connection)) => {
                        connection.create_channel().await.map_err(failed)?
                    }
                    (None, None) => return Err(QueueError::Closed),
                };
                match inner.take_dead_letters(&channel, max).await {
                    Ok(taken) => Ok((channel, taken)),
                    Err(e) => {
                        let _ = channel.close(REPLY_SUCCESS, "failed".into()).await;
                        Err(failed(e))
                    }
                }
            })
            .await;
        let (channel, (letters, last)) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                if let Some(connection) = &own {
                    close_connection(connection, "failed", inner.options.connect_timeout).await;
                }
                return Err(e);
            }
        };
        Ok(DeadLetterBatch::new(
            letters,
            DeadAcker::Rabbit(Box::new(RabbitDeadAcker {
                channel: Some(channel),
                own_connection: own,
                last,
                timeout: inner.options.settle_timeout,
                close_timeout: inner.options.connect_timeout,
            })),
        ))
    }

    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let queue = self.inner.topology.deliveries.clone();
        let subscription = Subscription::open(&self.inner, queue, "consumer", prefetch).await?;
        Ok(Box::new(RabbitConsumer {
            subscription,
            parts: std::collections::VecDeque::new(),
        }))
    }

    async fn close(&self) {
        self.inner.shutdown.cancel();
        let link = self.inner.publisher.lock().await.take();
        if let Some(link) = link {
            close_connection(
                &link.connection,
                "closed",
                self.inner.options.connect_timeout,
            )
            .await;
        }
        tracing::info!(prefix = %self.inner.options.prefix, "rabbitmq queue closed");
    }
}

/// A consumer's own connection, channel and subscription.
struct ConsumerLink {
    stream: lapin::Consumer,
    /// Cancelled when a delivery of this link could not be settled in time,
    /// which makes the subscription re-open, and when the link is dropped,
    /// which releases acks still waiting on it (see [`RabbitAcker`]).
    lost: CancellationToken,
    // Held so the channel and connection stay open; dropping the link closes
    // them, which makes the broker redeliver the unacked messages.
    _channel: Channel,
    _connection: Connection,
}

impl ConsumerLink {
    async fn open(
        inner: &Inner,
        queue: &str,
        role: &str,
        prefetch: u16,
    ) -> Result<Self, QueueError> {
        let connection = inner.open_connection(role).await?;
        let unavailable =
            |what: &str, e: lapin::Error| QueueError::Unavailable(format!("failed to {what}: {e}"));
        let setup = async {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| unavailable("open channel", e))?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| unavailable("set prefetch", e))?;
            inner.declare_topology(&channel).await?;
            let stream = channel
                .basic_consume(
                    queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| unavailable("subscribe", e))?;
            Ok((channel, stream))
        };
        let (channel, stream) = inner.set_up(role, setup).await?;
        Ok(Self {
            stream,
            lost: CancellationToken::new(),
            _channel: channel,
            _connection: connection,
        })
    }
}

impl Drop for ConsumerLink {
    fn drop(&mut self) {
        self.lost.cancel();
    }
}

/// A subscription to one queue on a connection of its own, re-opened with
/// capped backoff whenever it is lost. Both the task consumer and the event
/// consumer are built on it.
struct Subscription {
    inner: Arc<Inner>,
    /// The queue consumed.
    queue: String,
    /// Names the connection (`herald-queue {prefix} {role}`) and the logs.
    role: &'static str,
    prefetch: u16,
    link: Option<ConsumerLink>,
    /// Consecutive failed reconnects, for backoff.
    failures: u32,
}

impl Subscription {
    /// Subscribes now; fails if the broker is unreachable or the queue is closed.
    async fn open(
        inner: &Arc<Inner>,
        queue: String,
        role: &'static str,
        prefetch: u16,
    ) -> Result<Self, QueueError> {
        if inner.shutdown.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let link = ConsumerLink::open(inner, &queue, role, prefetch).await?;
        Ok(Self {
            inner: Arc::clone(inner),
            queue,
            role,
            prefetch,
            link: Some(link),
            failures: 0,
        })
    }

    /// Re-opens the link, waiting out the backoff first after failures. Returns
    /// false on shutdown.
    async fn reconnect(&mut self) -> bool {
        if self.failures > 0 {
            let wait = backoff_delay(
                self.failures,
                self.inner.options.reconnect_min,
                self.inner.options.reconnect_max,
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.shutdown.cancelled() => return false,
            }
        }
        let opened = tokio::select! {
            opened = ConsumerLink::open(&self.inner, &self.queue, self.role, self.prefetch) => opened,
            () = self.inner.shutdown.cancelled() => return false,
        };
        match opened {
            Ok(link) => {
                tracing::info!(prefix = %self.inner.options.prefix, role = self.role, after_failures = self.failures, "consumer resubscribed");
                self.link = Some(link);
                self.failures = 0;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(error = %e, role = self.role, failures = self.failures, "consumer reconnect failed");
            }
        }
        true
    }

    /// The next message from the broker and the acker to settle it with,
    /// resubscribing as often as needed; `None` only on shutdown.
    async fn next_delivery(&mut self) -> Option<(Delivery, RabbitAcker)> {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return None;
            }
            let Some(link) = self.link.as_mut() else {
                if !self.reconnect().await {
                    return None;
                }
                continue;
            };
            let lost = link.lost.clone();
            let item = tokio::select! {
                item = link.stream.next() => Some(item),
                () = lost.cancelled() => None,
                () = self.inner.shutdown.cancelled() => return None,
            };
            let Some(item) = item else {
                // Closing the channel is what returns a message whose ack may
                // have been lost, so this link must go even if it still works.
                tracing::debug!(
                    role = self.role,
                    "a delivery was not settled in time; resubscribing"
                );
                self.link = None;
                continue;
            };
            match item {
                Some(Ok(delivery)) => {
                    let acker = RabbitAcker {
                        acker: delivery.acker.clone(),
                        timeout: self.inner.options.settle_timeout,
                        link_lost: lost,
                    };
                    return Some((delivery, acker));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, role = self.role, "consumer connection lost; resubscribing");
                    self.link = None;
                }
                None => {
                    tracing::warn!(
                        role = self.role,
                        "consumer cancelled by the broker; resubscribing"
                    );
                    self.link = None;
                }
            }
        }
    }
}

/// The task consumer: due tasks from `{prefix}.deliveries`.
struct RabbitConsumer {
    subscription: Subscription,
    /// Tasks of a multi-task message not handed out yet.
    parts: std::collections::VecDeque<Received>,
}

impl RabbitConsumer {
    /// Turns a delivery into its tasks, or handles it here and returns none:
    /// malformed bodies are rejected (the broker dead-letters them) and
    /// messages that are not yet due go back onto the delay ladder.
    async fn accept(&self, delivery: Delivery, acker: RabbitAcker) -> Vec<Received> {
        let tasks = match crate::wire::decode(&delivery.data) {
            Ok(tasks) if !tasks.is_empty() => tasks,
            Ok(_) => {
                let _ = acker.ack().await; // An empty batch: nothing to do.
                return Vec::new();
            }
            Err(e) => {
                tracing::error!(error = %e, bytes = delivery.data.len(), "rejecting a message that is not a delivery task batch");
                if let Err(e) = acker.reject().await {
                    tracing::warn!(error = %e, "failed to reject a malformed message");
                }
                return Vec::new();
            }
        };
        let redelivered =
            delivery.redelivered || header(&delivery.properties, RETURNED_HEADER).is_some();
        let due_ms = header(&delivery.properties, DUE_HEADER).and_then(as_i64);
        let Some((due_ms, remaining)) =
            due_ms.and_then(|due| delay::remaining_until(due).map(|left| (due, left)))
        else {
            if let [_] = tasks.as_slice() {
                let task = tasks.into_iter().next().expect("one task");
                return vec![Received::new(task, redelivered, Acker::Rabbit(acker))];
            }
            let batch = Arc::new(BatchAck {
                inner: Arc::clone(&self.subscription.inner),
                state: std::sync::Mutex::new(BatchState {
                    acker: Some(acker),
                    left: tasks.len(),
                    lost: false,
                }),
            });
            return tasks
                .into_iter()
                .map(|task| {
                    let part = PartAcker {
                        batch: Arc::clone(&batch),
                    };
                    Received::new(task, redelivered, Acker::RabbitPart(part))
                })
                .collect();
        };
        // Not due yet: put it on the rung for the remainder, and only once that is
        // confirmed drop this copy. A crash in between leaves a duplicate, never a gap.
        let rung = delay::rung_for(remaining);
        let message = Outgoing {
            exchange: Exchange::Work,
            routing_key: delay_key(rung),
            body: delivery.data.clone(),
            headers: FieldTable::default(),
            id: tasks[0].msg_id.to_string(),
        }
        .header(DUE_HEADER, AMQPValue::LongLongInt(due_ms));
        let msg_id = &tasks[0].msg_id;
        tracing::debug!(
            %msg_id,
            tasks = tasks.len(),
            remaining_ms = remaining.as_millis() as u64,
            rung = %delay::rung_label(rung),
            "task not due yet; delaying the remainder"
        );
        match self
            .subscription
            .inner
            .publish_all(std::slice::from_ref(&message), false)
            .await
        {
            Ok(()) => {
                if let Err(e) = acker.ack().await {
                    tracing::warn!(%msg_id, error = %e, "failed to ack a re-delayed task; it may be delivered twice");
                }
            }
            Err(e) => {
                tracing::warn!(%msg_id, error = %e, "failed to re-delay a task; returning it");
                let _ = acker.requeue().await;
            }
        }
        Vec::new()
    }
}

/// One task's share of a broker message that carries several: the message
/// is settled once every task in it is. If all were acked it is acked;
/// a task that is requeued (or dropped) goes back as a message of its own
/// (marked returned, so it counts as redelivered), and if even that fails
/// the whole message is requeued once the others are done — a repeat of
/// work already done, never a gap.
pub(crate) struct PartAcker {
    batch: Arc<BatchAck>,
}

struct BatchAck {
    inner: Arc<Inner>,
    state: std::sync::Mutex<BatchState>,
}

struct BatchState {
    acker: Option<RabbitAcker>,
    /// Tasks not settled yet.
    left: usize,
    /// Whether a task could not be returned on its own.
    lost: bool,
}

impl BatchAck {
    /// Settles one task; the last settles the broker message.
    async fn settle_one(&self, returned: bool) -> Result<(), QueueError> {
        let (acker, lost) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.lost |= !returned;
            state.left = state.left.saturating_sub(1);
            if state.left > 0 {
                return Ok(());
            }
            (state.acker.take(), state.lost)
        };
        match acker {
            Some(acker) if lost => acker.requeue().await,
            Some(acker) => acker.ack().await,
            None => Ok(()),
        }
    }
}

impl PartAcker {
    pub(crate) async fn ack(self) -> Result<(), QueueError> {
        self.batch.settle_one(true).await
    }

    /// Returns `task` to the queue on its own, then settles this share.
    pub(crate) async fn requeue(self, task: &DeliveryTask) -> Result<(), QueueError> {
        let returned = match Outgoing::new(std::slice::from_ref(task), KEY_DELIVERIES.to_owned()) {
            Ok(message) => {
                let message = message.header(RETURNED_HEADER, AMQPValue::Boolean(true));
                self.batch
                    .inner
                    .publish_all(std::slice::from_ref(&message), false)
                    .await
                    .is_ok()
            }
            Err(_) => false,
        };
        self.batch.settle_one(returned).await
    }

    /// Called when a `Received` is dropped unsettled: requeue in the
    /// background. Without a runtime the channel's closing returns the whole
    /// message instead.
    pub(crate) fn release(self, task: DeliveryTask) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = self.requeue(&task).await {
                    tracing::debug!(error = %e, "failed to settle a dropped batch");
                }
            });
        }
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(received) = self.parts.pop_front() {
                return Some(received);
            }
            let (delivery, acker) = self.subscription.next_delivery().await?;
            self.parts = self.accept(delivery, acker).await.into();
        }
    }
}

#[async_trait]
impl EventBus for RabbitQueue {
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn publish_attempts(&self, events: &[AttemptCompleted]) -> Result<(), QueueError> {
        if events.is_empty() {
            return Ok(());
        }
        let message = Outgoing::events(events)?;
        // A refusal means the bounded stats queue is full: retrying would only
        // hold the worker up, so it fails at once.
        self.inner
            .publish_all(std::slice::from_ref(&message), true)
            .await
    }

    async fn consume_attempts(&self, prefetch: u16) -> Result<Box<dyn EventConsumer>, QueueError> {
        let queue = self.inner.topology.stats.clone();
        let subscription =
            Subscription::open(&self.inner, queue, "stats consumer", prefetch).await?;
        Ok(Box::new(RabbitEventConsumer {
            subscription,
            unpacked: Default::default(),
        }))
    }
}

/// The event consumer: events from `{prefix}.stats`.
struct RabbitEventConsumer {
    subscription: Subscription,
    /// Events of a message already received, not yet handed out.
    unpacked: std::collections::VecDeque<ReceivedEvent>,
}

#[async_trait]
impl EventConsumer for RabbitEventConsumer {
    async fn next(&mut self) -> Option<ReceivedEvent> {
        loop {
            if let Some(event) = self.unpacked.pop_front() {
                return Some(event);
            }
            let (delivery, acker) = self.subscription.next_delivery().await?;
            match decode_events(&delivery.data) {
                Ok(mut events) if events.len() == 1 => {
                    let event = events.pop().expect("one event");
                    return Some(ReceivedEvent::new(event, EventAcker::Rabbit(acker)));
                }
                Ok(events) if events.is_empty() => {
                    let _ = acker.ack().await;
                }
                Ok(events) => {
                    let shared = SharedAcker::new(acker, events.len());
                    self.unpacked.extend(events.into_iter().map(|event| {
                        ReceivedEvent::new(event, EventAcker::Shared(shared.clone()))
                    }));
                }
                Err(e) => {
                    // The stats queue has no dead-letter exchange: this drops it.
                    tracing::error!(
                        error = %e,
                        body = %String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(512)]),
                        "dropping a message on the stats queue that is not an attempt event"
                    );
                    if let Err(e) = acker.reject().await {
                        tracing::warn!(error = %e, "failed to reject a malformed event");
                    }
                }
            }
        }
    }
}

/// The events of one stats-queue message: a JSON object or an array of them.
fn decode_events(body: &[u8]) -> Result<Vec<AttemptCompleted>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        One(AttemptCompleted),
        Many(Vec<AttemptCompleted>),
    }
    Ok(match serde_json::from_slice(body)? {
        Body::One(event) => vec![event],
        Body::Many(events) => events,
    })
}

/// Settles one RabbitMQ delivery, within a bounded wait.
///
/// Why the bound (observed with lapin 4.12): an ack is a command to the
/// connection's internal loop. When the socket fails, lapin's I/O thread
/// queues the error for that loop and then its stop; an ack queued in between
/// lands behind the stop, so it is never run, and never dropped either (the
/// acker's own handle keeps the command queue alive), and its future never
/// completes. The ack itself does not matter — the dead connection returns the
/// message to the queue — but a caller awaiting it would never return, and a
/// worker would never ask for the next task and so never reconnect.
pub(crate) struct RabbitAcker {
    acker: lapin::Acker,
    /// [`RabbitOptions::settle_timeout`].
    timeout: Duration,
    /// The delivery's [`ConsumerLink::lost`].
    link_lost: CancellationToken,
}

impl RabbitAcker {
    pub(crate) async fn ack(self) -> Result<(), QueueError> {
        self.settle(self.acker.ack(BasicAckOptions::default()))
            .await
    }

    pub(crate) async fn requeue(self) -> Result<(), QueueError> {
        let nack = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        self.settle(self.acker.nack(nack)).await
    }

    /// Rejects without requeueing: the broker dead-letters the message, or
    /// drops it where the queue has no dead-letter exchange.
    pub(crate) async fn reject(self) -> Result<(), QueueError> {
        let reject = BasicRejectOptions { requeue: false };
        self.settle(self.acker.reject(reject)).await
    }

    /// Called when a `Received` or `ReceivedEvent` is dropped unacked: requeue in
    /// the background. Without a runtime the channel's closing returns the
    /// message instead.
    pub(crate) fn release(self) {
        if !self.acker.usable() || self.link_lost.is_cancelled() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = self.requeue().await {
                    tracing::debug!(error = %e, "failed to requeue a dropped delivery");
                }
            });
        }
    }

    async fn settle(
        &self,
        settle: impl std::future::Future<Output = Result<bool, lapin::Error>>,
    ) -> Result<(), QueueError> {
        tokio::select! {
            biased;
            outcome = settle => settled(outcome),
            () = self.link_lost.cancelled() => Err(QueueError::StaleDelivery(
                "its connection was lost; the broker redelivers the message".to_owned(),
            )),
            () = tokio::time::sleep(self.timeout) => {
                // Whether or not this ack was lost, re-opening the link closes
                // its channel, and that returns the message to the queue.
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "a delivery was not settled in time; its consumer reconnects"
                );
                self.link_lost.cancel();
                Err(QueueError::StaleDelivery(format!(
                    "not settled within {:?}; the consumer reconnects and the broker redelivers the message",
                    self.timeout
                )))
            }
        }
    }
}

/// The dead letters of a [`DeadLetterBatch`] got from `{prefix}.dead` on a
/// channel of their own: one multiple ack settles them all; closing the
/// channel unacked returns them to the queue.
pub(crate) struct RabbitDeadAcker {
    channel: Option<Channel>,
    /// The connection opened for this batch when the publisher's was down.
    own_connection: Option<Connection>,
    /// The acker of the last message got, if any.
    last: Option<lapin::Acker>,
    timeout: Duration,
    close_timeout: Duration,
}

impl RabbitDeadAcker {
    pub(crate) async fn ack(mut self) -> Result<(), QueueError> {
        let outcome = match self.last.take() {
            None => Ok(()),
            Some(acker) => {
                let ack = acker.ack(BasicAckOptions { multiple: true });
                match tokio::time::timeout(self.timeout, ack).await {
                    Ok(outcome) => settled(outcome),
                    Err(_) => Err(QueueError::StaleDelivery(
                        "dead letters not acked in time; they return to the queue".to_owned(),
                    )),
                }
            }
        };
        self.close("done").await;
        outcome
    }

    /// Called when the batch is dropped unacked: closing its channel returns
    /// the letters to the queue. Without a runtime, the channel's end with
    /// its connection does.
    pub(crate) fn release(mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { self.close("released").await });
        }
    }

    async fn close(&mut self, reason: &str) {
        if let Some(channel) = self.channel.take() {
            let close = channel.close(REPLY_SUCCESS, reason.into());
            if tokio::time::timeout(self.close_timeout, close)
                .await
                .is_err()
            {
                tracing::debug!(reason, "gave up closing a dead-letter channel");
            }
        }
        if let Some(connection) = self.own_connection.take() {
            close_connection(&connection, reason, self.close_timeout).await;
        }
    }
}

/// Closes `connection` politely, giving up after `within`: the close of a
/// connection that died a moment ago may never complete, and dropping it is
/// then all there is left to do.
async fn close_connection(connection: &Connection, reason: &str, within: Duration) {
    let close = connection.close(REPLY_SUCCESS, reason.into());
    if tokio::time::timeout(within, close).await.is_err() {
        tracing::debug!(reason, "gave up closing a rabbitmq connection");
    }
}

fn settled(outcome: Result<bool, lapin::Error>) -> Result<(), QueueError> {
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::StaleDelivery(
            "its channel is closed; the broker redelivers the message".to_owned(),
        )),
        Err(e) => Err(QueueError::StaleDelivery(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_names_follow_the_prefix() {
        let topology = Topology::new("herald");
        assert_eq!(topology.work_exchange, "herald.work");
        assert_eq!(topology.deliveries, "herald.deliveries");
        assert_eq!(topology.dead, "herald.dead");
        assert_eq!(
            topology.delay_queues.first().map(String::as_str),
            Some("herald.delay.1s")
        );
        assert_eq!(
            topology.delay_queues.last().map(String::as_str),
            Some("herald.delay.10h")
        );
        assert_eq!(topology.queues().count(), 13);
        assert_eq!(topology.attempts_exchange, "herald.attempts");
        assert_eq!(topology.stats, "herald.stats");
        assert!(topology.queues().any(|queue| queue == "herald.stats"));
        assert_eq!(
            topology.exchanges().collect::<Vec<_>>(),
            ["herald.work", "herald.attempts"]
        );
    }

    #[test]
    fn queued_events_with_an_unknown_error_class_still_decode() {
        use herald_core::ErrorClass;
        let event = |class: &str| {
            format!(
                r#"{{"attemptId":"atmpt_1","tenantId":"tnt_1","appId":"app_1","endpointId":"ep_1",
                "eventType":"user.created","success":false,"statusCode":0,
                "errorClass":"{class}","durationUs":1,"atUs":0}}"#
            )
        };
        let one = decode_events(event("expired").as_bytes()).expect("one event");
        assert_eq!(
            one.iter().map(|e| e.error_class).collect::<Vec<_>>(),
            [Some(ErrorClass::Other)]
        );
        let many = format!("[{},{}]", event("5xx"), event("expired"));
        let many = decode_events(many.as_bytes()).expect("a batch");
        assert_eq!(
            many.iter().map(|e| e.error_class).collect::<Vec<_>>(),
            [Some(ErrorClass::Http5xx), Some(ErrorClass::Other)]
        );
    }
}
