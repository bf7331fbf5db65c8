//! Helpers shared by the queue integration tests: sample tasks, a harness that
//! gives the contract suite one view of either implementation, and a RabbitMQ
//! fixture with a unique prefix per test that deletes its queues afterwards.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use herald_core::{ApplicationId, EndpointId, ErrorClass, MessageId, TenantId};
use herald_queue::{
    AttemptCompleted, Consumer, DeadLetter, DeliveryTask, EventBus, EventConsumer, MemoryQueue,
    MemoryQueueOptions, Queue, QueueError, RabbitOptions, RabbitQueue, Received, ReceivedEvent,
    Topology,
};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

/// Delivery limit every test queue is created with, small so poison tests are quick.
pub const TEST_DELIVERY_LIMIT: u32 = 3;

/// Dead letters every test queue holds at most, small so the bound is seen.
pub const TEST_DEAD_LETTER_BOUND: u32 = 5;

/// Generous upper bound for anything that should happen "soon".
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn services_required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The message id of [`task`] `n`.
pub fn msg_id(n: u32) -> String {
    format!("msg_{n:0>27}")
}

/// A task whose `msg_id` is [`msg_id`]`(n)`.
pub fn task(n: u32) -> DeliveryTask {
    let id = |prefix: &str| format!("{prefix}{:0>27}", 0);
    DeliveryTask::new(
        TenantId::parse(&id("tnt_")).expect("tenant id"),
        ApplicationId::parse(&id("app_")).expect("app id"),
        MessageId::parse(&msg_id(n)).expect("message id"),
        EndpointId::parse(&id("ep_")).expect("endpoint id"),
    )
}

/// An event whose `attempt_id` is `atmpt_{n}`; odd numbers failed, even ones succeeded.
pub fn attempt(n: u32) -> AttemptCompleted {
    let success = n.is_multiple_of(2);
    AttemptCompleted {
        attempt_id: format!("atmpt_{n}"),
        tenant_id: "tnt_test".to_owned(),
        app_id: "app_test".to_owned(),
        endpoint_id: format!("ep_{}", n % 3),
        event_type: "user.created".to_owned(),
        success,
        status_code: if success { 200 } else { 503 },
        error_class: (!success).then_some(ErrorClass::Http5xx),
        duration_us: 1_000 + u64::from(n),
        at_us: 1_700_000_000_000_000 + i64::from(n),
    }
}

/// What the contract suite needs from an implementation besides the trait.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The queue under test.
    fn queue(&self) -> &dyn Queue;
    /// The same implementation's event bus.
    fn bus(&self) -> &dyn EventBus;
    /// Everything dead-lettered so far.
    async fn dead_letters(&self) -> Vec<DeadLetter>;
}

/// Harness over a fresh [`MemoryQueue`].
pub struct MemoryHarness(pub MemoryQueue);

impl MemoryHarness {
    pub fn new() -> Self {
        Self(MemoryQueue::with_options(MemoryQueueOptions {
            delivery_limit: TEST_DELIVERY_LIMIT,
            dead_letter_capacity: TEST_DEAD_LETTER_BOUND as usize,
        }))
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    fn queue(&self) -> &dyn Queue {
        &self.0
    }

    fn bus(&self) -> &dyn EventBus {
        &self.0
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.0.dead_letters()
    }
}

/// Harness over a [`RabbitQueue`]; dead letters taken from the broker are kept
/// so repeated reads see all of them.
pub struct RabbitHarness {
    pub queue: RabbitQueue,
    taken: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl Harness for RabbitHarness {
    fn queue(&self) -> &dyn Queue {
        &self.queue
    }

    fn bus(&self) -> &dyn EventBus {
        &self.queue
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let batch = self
            .queue
            .take_dead_letters(1000)
            .await
            .expect("read dead letters");
        let fresh = batch.letters.clone();
        batch.ack().await.expect("ack dead letters");
        let mut taken = self.taken.lock().expect("lock");
        taken.extend(fresh);
        taken.clone()
    }
}

/// The broker URL when RabbitMQ is reachable; otherwise `None` after a loud skip
/// notice, or a panic when `HERALD_REQUIRE_SERVICES=1`.
pub async fn rabbit_or_skip() -> Option<String> {
    let url = amqp_url();
    let connect = Connection::connect(&url, ConnectionProperties::default());
    let failure = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "probe".into()).await;
            return Some(url);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    assert!(
        !services_required(),
        "RabbitMQ unreachable at {url} ({failure}) and HERALD_REQUIRE_SERVICES=1"
    );
    skip_notice(&format!(
        "RabbitMQ unreachable at {url} ({failure}); \
         set HERALD_REQUIRE_SERVICES=1 to make this a failure"
    ));
    None
}

/// Prints a skip notice once per test binary, straight to stderr so the test
/// harness's output capture does not hide it.
pub fn skip_notice(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!! SKIPPING RabbitMQ tests: {why} !!!!!\n"
        );
    });
}

/// Runs `body` against a [`RabbitQueue`] with a unique prefix and the test
/// delivery limit, then deletes everything it declared — also when `body`
/// panics. Skips loudly when the broker is unreachable, unless
/// `HERALD_REQUIRE_SERVICES=1`.
/// Longest a RabbitMQ test body may run.
const TEST_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

pub async fn with_rabbit<F, Fut>(body: F)
where
    F: FnOnce(RabbitHarness) -> Fut,
    Fut: Future<Output = ()>,
{
    with_rabbit_options(|_| {}, body).await;
}

/// [`with_rabbit`] with options adjusted by `configure` (which may, for
/// instance, point the queue at a proxy; cleanup always uses the broker directly).
pub async fn with_rabbit_options<C, F, Fut>(configure: C, body: F)
where
    C: FnOnce(&mut RabbitOptions),
    F: FnOnce(RabbitHarness) -> Fut,
    Fut: Future<Output = ()>,
{
    init_tracing();
    let Some(url) = rabbit_or_skip().await else {
        return;
    };
    let mut options = RabbitOptions {
        prefix: unique_prefix(),
        delivery_limit: TEST_DELIVERY_LIMIT,
        dead_max_length: TEST_DEAD_LETTER_BOUND,
        ..RabbitOptions::new(url.clone())
    };
    configure(&mut options);
    let queue = match RabbitQueue::connect_with(options).await {
        Ok(queue) => queue,
        Err(e) => panic!("cannot use RabbitMQ at {url}: {e}"),
    };
    let topology = queue.topology().clone();
    let harness = RabbitHarness {
        queue: queue.clone(),
        taken: Mutex::new(Vec::new()),
    };
    // A hung broker interaction fails the test instead of stalling the suite.
    let limited = async {
        if tokio::time::timeout(TEST_TIME_LIMIT, body(harness))
            .await
            .is_err()
        {
            panic!("test did not finish within {TEST_TIME_LIMIT:?}");
        }
    };
    let outcome = AssertUnwindSafe(limited).catch_unwind().await;
    queue.close().await;
    drop(queue);
    delete_topology(&url, &topology).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Shows the crate's logs in test output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A prefix no other test uses, so tests can share one broker in parallel.
pub fn unique_prefix() -> String {
    format!(
        "herald-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Deletes every queue and exchange of `topology`.
pub async fn delete_topology(url: &str, topology: &Topology) {
    let connection = match Connection::connect(url, ConnectionProperties::default()).await {
        Ok(connection) => connection,
        Err(e) => {
            eprintln!("cleanup: cannot connect to delete {topology:?}: {e}");
            return;
        }
    };
    let channel = match connection.create_channel().await {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("cleanup: cannot open channel: {e}");
            return;
        }
    };
    for queue in topology.queues() {
        if let Err(e) = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("cleanup: failed to delete queue {queue}: {e}");
        }
    }
    for exchange in topology.exchanges() {
        if let Err(e) = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await
        {
            eprintln!("cleanup: failed to delete exchange {exchange}: {e}");
        }
    }
    let _ = connection.close(200, "test cleanup".into()).await;
}

/// The next task, failing the test if none arrives within [`EVENTUALLY`].
pub async fn next_task(consumer: &mut Box<dyn Consumer>) -> Received {
    match tokio::time::timeout(EVENTUALLY, consumer.next()).await {
        Ok(Some(received)) => received,
        Ok(None) => panic!("consumer ended unexpectedly"),
        Err(_) => panic!("no task arrived within {EVENTUALLY:?}"),
    }
}

/// Fails the test if a task arrives within `quiet`.
pub async fn assert_no_task(consumer: &mut Box<dyn Consumer>, quiet: Duration) {
    if let Ok(Some(received)) = tokio::time::timeout(quiet, consumer.next()).await {
        panic!("unexpected task {:?}", received.task);
    }
}

/// The next event, failing the test if none arrives within [`EVENTUALLY`].
pub async fn next_event(consumer: &mut Box<dyn EventConsumer>) -> ReceivedEvent {
    match tokio::time::timeout(EVENTUALLY, consumer.next()).await {
        Ok(Some(received)) => received,
        Ok(None) => panic!("event consumer ended unexpectedly"),
        Err(_) => panic!("no event arrived within {EVENTUALLY:?}"),
    }
}

/// Fails the test if an event arrives within `quiet`.
pub async fn assert_no_event(consumer: &mut Box<dyn EventConsumer>, quiet: Duration) {
    if let Ok(Some(received)) = tokio::time::timeout(quiet, consumer.next()).await {
        panic!("unexpected event {:?}", received.event);
    }
}

/// Acks events until every attempt id in `expected` was delivered and acked;
/// returns how many deliveries that took (duplicates included).
pub async fn drain_events_until_seen(
    consumer: &mut Box<dyn EventConsumer>,
    expected: &HashSet<String>,
) -> usize {
    let mut seen = HashSet::new();
    let mut deliveries = 0;
    while !expected.is_subset(&seen) {
        let received = next_event(consumer).await;
        deliveries += 1;
        let attempt_id = received.event.attempt_id.clone();
        match received.ack().await {
            Ok(()) => {
                seen.insert(attempt_id);
            }
            // The connection dropped before the ack; the broker delivers it again.
            Err(QueueError::StaleDelivery(_)) => {}
            Err(e) => panic!("ack failed: {e}"),
        }
    }
    deliveries
}

/// Polls the dead letters until at least `count` are there.
pub async fn wait_for_dead_letters(harness: &dyn Harness, count: usize) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        let letters = harness.dead_letters().await;
        if letters.len() >= count {
            return letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} dead letters arrived: {letters:?}",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Acks tasks until every msg id in `expected` was delivered and acked; returns
/// how many deliveries that took (duplicates included).
pub async fn drain_until_seen(
    consumer: &mut Box<dyn Consumer>,
    expected: &HashSet<String>,
) -> usize {
    let mut seen = HashSet::new();
    let mut deliveries = 0;
    while !expected.is_subset(&seen) {
        let received = next_task(consumer).await;
        deliveries += 1;
        let msg_id = received.task.msg_id.to_string();
        match received.ack().await {
            Ok(()) => {
                seen.insert(msg_id);
            }
            // The connection dropped before the ack; the broker delivers it again.
            Err(QueueError::StaleDelivery(_)) => {}
            Err(e) => panic!("ack failed: {e}"),
        }
    }
    deliveries
}

/// A TCP proxy in front of the broker that a test can cut (every connection
/// dropped, new ones refused, as when the broker is down) and restore.
pub struct Proxy {
    addr: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free local port forwarding to the broker of `url`.
    pub async fn start(url: &str) -> Self {
        let parsed = url::Url::parse(url).expect("parse amqp url");
        let host = parsed.host_str().expect("amqp url has a host").to_owned();
        let port = parsed.port().unwrap_or(5672);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve broker")
            .next()
            .expect("broker address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut proxy = Self {
            addr,
            upstream,
            tasks: None,
        };
        proxy.serve(listener);
        proxy
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("parse amqp url");
        parsed.set_ip_host(self.addr.ip()).expect("set host");
        parsed.set_port(Some(self.addr.port())).expect("set port");
        parsed.to_string()
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        self.tasks = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
        }));
    }

    /// Drops every proxied connection and stops listening.
    pub async fn cut(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.abort();
            let _ = tasks.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind proxy");
        self.serve(listener);
    }
}
