//! The production topology for delivery tests: one API process
//! (`HERALD_ROLES=api`) and separate worker processes (`HERALD_ROLES=worker`)
//! of the real binary, sharing one fresh test database and delivering through
//! RabbitMQ under a prefix no other test uses.
//!
//! With [`TopologyOptions::compose`] it is the topology docker-compose runs:
//! the API process also gets `HERALD_AMQP_URL` (it publishes new deliveries
//! straight to the workers' queue) and `HERALD_REDIS_URL` (idempotency records
//! in Redis, under a prefix of its own), and every worker or stats process
//! serves `/metrics` and `/health` on a `HERALD_METRICS_ADDR` of its own.
//! Processes can be stopped gracefully ([`Topology::terminate`], SIGTERM) and
//! their exit awaited ([`Topology::wait_for_exit`]); a worker
//! ([`Topology::kill_worker`]) or the API ([`Topology::kill_api`], then
//! [`Topology::restart_api`]) can be killed with SIGKILL.
//!
//! Everything the topology declared on the broker (the exchanges
//! `{prefix}.work` and `{prefix}.attempts`, the queues `{prefix}.deliveries`,
//! `{prefix}.dead`, `{prefix}.stats` and `{prefix}.delay.*`) is deleted when the
//! [`Topology`] is dropped, also when the test panics; topologies left by killed
//! test processes are swept after two hours. Without a reachable broker the
//! tests skip, or fail under `HERALD_REQUIRE_SERVICES=1`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::receiver::Received;
use crate::{herald_bin, skip_or_fail, Herald, Options};

/// Where the tests find RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Prefix of every topology these tests create; followed by the creation time
/// in Unix seconds, so stale ones can be recognised.
const PREFIX_STEM: &str = "herald-e2e-";

/// Topologies older than this are left over from killed test runs.
const STALE_AFTER: Duration = Duration::from_secs(2 * 60 * 60);

/// How long a worker may take to report "worker started".
const WORKER_START_LIMIT: Duration = Duration::from_secs(60);

/// Settings of the worker processes.
#[derive(Clone, Debug)]
pub struct TopologyOptions {
    /// `HERALD_DELIVERY_TIMEOUT`, seconds.
    pub delivery_timeout: u64,
    /// `HERALD_DELIVERY_LEASE`, seconds (at least `delivery_timeout + 5`): how
    /// long a task lost with a killed worker waits before it is handed out again.
    pub delivery_lease: u64,
    /// `HERALD_RETRY_SCHEDULE`.
    pub retry_schedule: String,
    /// Extra environment variables for the worker (and stats) processes.
    pub worker_env: Vec<(String, String)>,
    /// Start the API process as docker-compose does: with `HERALD_AMQP_URL`
    /// and `HERALD_AMQP_PREFIX` of this topology (so it hands new deliveries
    /// straight to RabbitMQ), and with `HERALD_REDIS_URL` and a fresh
    /// `HERALD_REDIS_PREFIX`. Without it the API uses neither, and the
    /// workers' relay hands out what it stored.
    pub api_on_broker: bool,
    /// Extra environment variables for the API process.
    pub api_env: Vec<(String, String)>,
    /// Give every worker and stats process a `HERALD_METRICS_ADDR` (a free
    /// loopback port): see [`Topology::metrics_addr`].
    pub metrics: bool,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            delivery_timeout: 12,
            delivery_lease: 20,
            retry_schedule: "1,1".to_owned(),
            worker_env: Vec::new(),
            api_on_broker: false,
            api_env: Vec::new(),
            metrics: false,
        }
    }
}

impl TopologyOptions {
    /// docker-compose's topology: the API on RabbitMQ and Redis, and a
    /// metrics listener in every other process.
    pub fn compose() -> Self {
        Self {
            api_on_broker: true,
            metrics: true,
            ..Self::default()
        }
    }
}

/// How a process of the topology ended, if it was ended by the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Killed,
    Terminated,
}

/// One `herald serve` process with `HERALD_ROLES=worker` (or `stats`).
struct WorkerProcess {
    number: usize,
    roles: String,
    child: Child,
    log_path: PathBuf,
    ended: Option<Ended>,
    /// The address its metrics listener is bound to, once it said so.
    metrics_addr: Option<String>,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// An API process, worker processes and their RabbitMQ topology.
///
/// Fields drop in order: the workers are killed first (so nothing re-declares
/// the queues), then the API process and the database, and last the broker
/// topology is deleted.
pub struct Topology {
    workers: Mutex<Vec<WorkerProcess>>,
    /// The API process (`HERALD_ROLES=api`) with its tenant, HTTP helpers and
    /// the shared test database.
    pub api: Herald,
    /// `HERALD_AMQP_PREFIX` of the workers.
    pub prefix: String,
    pub amqp_url: String,
    options: TopologyOptions,
    _cleanup: RabbitCleanup,
}

impl Topology {
    /// Waits (at most `limit`) until every message of `ids` reached `path` at
    /// least once, then (at most a minute) until no delivery is unfinished;
    /// fails with the logs otherwise. Returns the arrivals per message id and
    /// the deliveries by state.
    pub async fn wait_for_every_message(
        &self,
        receiver: &crate::receiver::Receiver,
        path: &str,
        ids: &HashSet<String>,
        limit: Duration,
    ) -> (HashMap<String, usize>, HashMap<String, i64>) {
        let deadline = Instant::now() + limit;
        let counts = loop {
            let counts = count_by_message(&receiver.received(path));
            if missing(ids, &counts).is_empty() || Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let lost = missing(ids, &counts);
        assert!(
            lost.is_empty(),
            "{} of {} messages never arrived (e.g. {:?}); deliveries by state: {:?}; logs:\n{}",
            lost.len(),
            ids.len(),
            &lost[..lost.len().min(5)],
            self.delivery_states().await,
            self.logs()
        );
        let states = self
            .wait_until_deliveries_finished(Duration::from_secs(60))
            .await;
        assert_eq!(
            unfinished(&states),
            0,
            "deliveries left unfinished: {states:?}; logs:\n{}",
            self.logs()
        );
        (counts, states)
    }

    /// Starts the API process and one worker, or returns `None` (after a
    /// notice) when PostgreSQL or RabbitMQ is unreachable and services are
    /// optional.
    pub async fn start(options: TopologyOptions) -> Option<Self> {
        let amqp_url = amqp_url();
        if let Err(why) = rabbit_reachable(&amqp_url).await {
            return skip_or_fail("RabbitMQ", &why);
        }
        sweep_stale_topologies(&amqp_url).await;
        let prefix = fresh_prefix();
        // Created first so that it is dropped last, also if a start-up below panics.
        let cleanup = RabbitCleanup {
            url: amqp_url.clone(),
            prefix: prefix.clone(),
        };
        let mut api_options = Options {
            env: options.api_env.clone(),
            ..Options::default()
        };
        if options.api_on_broker {
            api_options.redis = true;
            api_options
                .env
                .push(("HERALD_AMQP_URL".into(), amqp_url.clone()));
            api_options
                .env
                .push(("HERALD_AMQP_PREFIX".into(), prefix.clone()));
        }
        let api = Herald::start_with(api_options).await?;
        let topology = Self {
            workers: Mutex::new(Vec::new()),
            api,
            prefix,
            amqp_url,
            options,
            _cleanup: cleanup,
        };
        topology.start_worker().await;
        Some(topology)
    }

    /// The queue and exchange names of this topology.
    pub fn names(&self) -> herald_queue::Topology {
        herald_queue::Topology::new(&self.prefix)
    }

    /// Starts another worker process and waits until it has connected to
    /// RabbitMQ (its log says "worker started"); returns its number (1 for
    /// the first process started, counting stats processes too).
    pub async fn start_worker(&self) -> usize {
        self.start_process("worker", "worker started").await
    }

    /// Starts a stats process (`HERALD_ROLES=stats`) and waits until its
    /// aggregator consumes events; returns its number. [`Topology::kill_worker`]
    /// kills it like a worker when it is the latest process started.
    pub async fn start_stats(&self) -> usize {
        self.start_process("stats", "stats aggregator started")
            .await
    }

    /// Starts a `herald serve` with these roles and waits for `ready` in its
    /// log (and, with [`TopologyOptions::metrics`], for its metrics address).
    async fn start_process(&self, roles: &str, ready: &str) -> usize {
        let number = self.lock_workers().len() + 1;
        let log_path =
            std::env::temp_dir().join(format!("{}-worker{number}.log", self.api.db.name));
        let log = std::fs::File::create(&log_path).expect("create worker log file");
        let mut command = Command::new(herald_bin());
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_ROLES", roles)
            .env("HERALD_DATABASE_URL", &self.api.db.url)
            .env("HERALD_DATABASE_MAX_CONNECTIONS", "10")
            .env("HERALD_AMQP_URL", &self.amqp_url)
            .env("HERALD_AMQP_PREFIX", &self.prefix)
            .env("HERALD_SSRF_ALLOW", "127.0.0.0/8,::1")
            .env("HERALD_RETRY_SCHEDULE", &self.options.retry_schedule)
            .env(
                "HERALD_DELIVERY_TIMEOUT",
                self.options.delivery_timeout.to_string(),
            )
            .env(
                "HERALD_DELIVERY_LEASE",
                self.options.delivery_lease.to_string(),
            )
            .env(
                "HERALD_LOG",
                "warn,herald=info,herald_queue=info,herald_stats=info,herald_worker=info",
            )
            .envs(self.options.worker_env.clone())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if self.options.metrics {
            // Port 0: the process says which port it got.
            command.env("HERALD_METRICS_ADDR", "127.0.0.1:0");
        }
        let mut child = command.spawn().expect("spawn herald worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let rx = crate::lines_after(stdout, "herald: metrics on http://");
        self.lock_workers().push(WorkerProcess {
            number,
            roles: roles.to_owned(),
            child,
            log_path: log_path.clone(),
            ended: None,
            metrics_addr: None,
        });
        let deadline = Instant::now() + WORKER_START_LIMIT;
        let mut metrics_addr = None;
        loop {
            if let Ok(rest) = rx.try_recv() {
                metrics_addr = Some(rest.trim_end_matches("/metrics").to_owned());
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(ready) && (metrics_addr.is_some() || !self.options.metrics) {
                let mut workers = self.lock_workers();
                let worker = workers.last_mut().expect("the worker just started");
                worker.metrics_addr = metrics_addr;
                return number;
            }
            let exited = {
                let mut workers = self.lock_workers();
                let worker = workers.last_mut().expect("the worker just started");
                matches!(worker.child.try_wait(), Ok(Some(_)))
            };
            if exited || Instant::now() > deadline {
                panic!(
                    "worker {number} {} within {WORKER_START_LIMIT:?}; logs:\n{}",
                    if exited { "exited" } else { "did not start" },
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the most recently started live worker with SIGKILL: no graceful
    /// shutdown, tasks in flight are lost with it.
    pub fn kill_worker(&self) {
        let mut workers = self.lock_workers();
        let worker = workers
            .iter_mut()
            .rev()
            .find(|w| w.ended.is_none())
            .expect("a live worker to kill");
        worker.child.kill().expect("SIGKILL the worker");
        let _ = worker.child.wait();
        worker.ended = Some(Ended::Killed);
    }

    /// Kills the API process with SIGKILL: no graceful shutdown, requests in
    /// flight get no answer (a connection reset). The workers keep running.
    /// See [`Topology::restart_api`].
    pub fn kill_api(&mut self) {
        self.api.kill();
    }

    /// Starts a new API process with the API's configuration (database,
    /// tenant, RabbitMQ and Redis prefixes) once it stopped or was killed,
    /// and waits until it listens; on a new port, so [`Herald::url`] of
    /// [`Topology::api`] changes.
    pub async fn restart_api(&mut self) {
        self.api.restart().await;
    }

    /// Sends process `number` SIGTERM (what `docker stop` sends first): it
    /// stops gracefully within `HERALD_SHUTDOWN_TIMEOUT`. See
    /// [`Topology::wait_for_exit`].
    pub fn terminate(&self, number: usize) {
        let mut workers = self.lock_workers();
        let worker = workers
            .iter_mut()
            .find(|w| w.number == number)
            .unwrap_or_else(|| panic!("no process {number}"));
        if matches!(worker.child.try_wait(), Ok(None)) {
            crate::sigterm(worker.child.id());
        }
        worker.ended = Some(Ended::Terminated);
    }

    /// Waits (at most `limit`) for process `number` to exit; its exit status,
    /// or `None` if it is still running then.
    pub async fn wait_for_exit(&self, number: usize, limit: Duration) -> Option<ExitStatus> {
        crate::wait_for_exit(
            || {
                let mut workers = self.lock_workers();
                let worker = workers.iter_mut().find(|w| w.number == number)?;
                worker.child.try_wait().ok().flatten()
            },
            limit,
        )
        .await
    }

    /// The address (`127.0.0.1:PORT`) of process `number`'s metrics listener
    /// (`/metrics` and `/health`); needs [`TopologyOptions::metrics`].
    pub fn metrics_addr(&self, number: usize) -> String {
        self.lock_workers()
            .iter()
            .find(|w| w.number == number)
            .and_then(|w| w.metrics_addr.clone())
            .unwrap_or_else(|| panic!("process {number} has no metrics address"))
    }

    /// The end of every process's log (API and workers), for assertion messages.
    pub fn logs(&self) -> String {
        const LINES: usize = 60;
        let mut out = format!(
            "--- api log (last {LINES} lines) ---\n{}",
            tail(&self.api.log(), LINES)
        );
        for worker in self.lock_workers().iter() {
            let log = std::fs::read_to_string(&worker.log_path).unwrap_or_default();
            out.push_str(&format!(
                "--- {} {}{} log (last {LINES} lines) ---\n{}",
                worker.roles,
                worker.number,
                match worker.ended {
                    None => "",
                    Some(Ended::Killed) => " (killed)",
                    Some(Ended::Terminated) => " (sent SIGTERM)",
                },
                tail(&log, LINES)
            ));
        }
        out
    }

    /// How many worker processes are still running (not killed, not exited).
    pub fn live_workers(&self) -> usize {
        self.lock_workers()
            .iter_mut()
            .filter(|w| w.ended.is_none())
            .filter_map(|w| w.child.try_wait().ok())
            .filter(Option::is_none)
            .count()
    }

    /// The whole log of worker `number` (1 for the first one started).
    pub fn worker_log(&self, number: usize) -> String {
        self.lock_workers()
            .iter()
            .find(|w| w.number == number)
            .and_then(|w| std::fs::read_to_string(&w.log_path).ok())
            .unwrap_or_default()
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, Vec<WorkerProcess>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to the shared test database.
    pub async fn db(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.api.db.url)
            .await
            .expect("connect to the test database")
    }

    /// `(state, attempts)` of the one delivery of `msg_id`.
    pub async fn delivery(&self, msg_id: &str) -> (String, i32) {
        sqlx::query_as("SELECT state, attempts FROM delivery WHERE msg_id = $1")
            .bind(msg_id)
            .fetch_one(&mut self.db().await)
            .await
            .expect("read the delivery")
    }

    /// Polls the delivery of `msg_id` until it is in `state` (at most `limit`);
    /// returns the last `(state, attempts)` seen.
    pub async fn wait_for_delivery(
        &self,
        msg_id: &str,
        state: &str,
        limit: Duration,
    ) -> (String, i32) {
        let deadline = Instant::now() + limit;
        loop {
            let current = self.delivery(msg_id).await;
            if current.0 == state || Instant::now() > deadline {
                return current;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many delivery rows are in each state.
    pub async fn delivery_states(&self) -> HashMap<String, i64> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM delivery GROUP BY state")
                .fetch_all(&mut self.db().await)
                .await
                .expect("count deliveries by state");
        rows.into_iter().collect()
    }

    /// Polls until no delivery is `pending` or `sending` (at most `limit`);
    /// returns the last counts by state.
    pub async fn wait_until_deliveries_finished(&self, limit: Duration) -> HashMap<String, i64> {
        let deadline = Instant::now() + limit;
        loop {
            let states = self.delivery_states().await;
            let unfinished = unfinished(&states);
            if unfinished == 0 || Instant::now() > deadline {
                return states;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How many messages are ready in `queue` (a passive declare), or `None`
    /// if the queue does not exist.
    pub async fn queue_depth(&self, queue: &str) -> Option<u32> {
        let (connection, channel) = open_channel(&self.amqp_url).await.ok()?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = connection.close(200, "done".into()).await;
        declared.ok().map(|q| q.message_count())
    }

    /// Takes every message out of `{prefix}.dead`: each task it carries, as
    /// flat JSON (a body that is no task batch, as a JSON string).
    pub async fn take_dead_letters(&self) -> Vec<Value> {
        let (connection, channel) = open_channel(&self.amqp_url)
            .await
            .expect("connect to RabbitMQ");
        let mut letters = Vec::new();
        for _ in 0..100_000 {
            let got = channel
                .basic_get(
                    self.names().dead.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get from the dead-letter queue");
            let Some(message) = got else { break };
            let body = &message.delivery.data;
            match herald_queue::wire::decode(body) {
                // One letter per task the broker message carries.
                Ok(tasks) => letters.extend(tasks.into_iter().map(|task| {
                    serde_json::json!({
                        "tenant_id": task.tenant_id.as_str(),
                        "app_id": task.app_id.as_str(),
                        "msg_id": task.msg_id.as_str(),
                        "endpoint_id": task.endpoint_id.as_str(),
                        "attempt": task.attempt,
                        "manual": task.manual,
                        "record_failures": task.record_failures,
                    })
                })),
                Err(_) => letters.push(Value::String(String::from_utf8_lossy(body).into_owned())),
            }
        }
        let _ = connection.close(200, "done".into()).await;
        letters
    }
}

/// Pending plus sending deliveries in counts from [`Topology::delivery_states`].
pub fn unfinished(states: &HashMap<String, i64>) -> i64 {
    ["pending", "sending"]
        .iter()
        .map(|s| states.get(*s).copied().unwrap_or(0))
        .sum()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}

/// Creates an application with one endpoint per URL (no filters, so every
/// message goes to all of them).
pub async fn create_app(api: &Herald, uid: &str, urls: &[String]) {
    let app = api
        .post("/api/v1/app", json!({"name": uid, "uid": uid}))
        .await;
    assert_eq!(app.status, 201, "create app: {app:?}");
    for url in urls {
        let endpoint = api
            .post(&format!("/api/v1/app/{uid}/endpoint"), json!({"url": url}))
            .await;
        assert_eq!(endpoint.status, 201, "create endpoint: {endpoint:?}");
    }
}

/// Posts `count` messages to application `app`, `concurrency` at a time, and
/// returns their ids. `posted` counts the accepted ones as they go. Owns
/// everything it needs, so it can run in its own task.
pub async fn post_messages(
    base_url: String,
    key: String,
    app: String,
    count: usize,
    concurrency: usize,
    posted: Arc<AtomicUsize>,
) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("http client");
    let url = format!("{base_url}/api/v1/app/{app}/msg");
    futures::stream::iter(0..count)
        .map(|n| {
            let (http, url, key, posted) = (http.clone(), url.clone(), key.clone(), posted.clone());
            async move {
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"eventType": "burst", "payload": {"n": n}}))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("post message {n}: {e}"));
                let reply = Herald::reply(response).await;
                assert_eq!(reply.status, 202, "post message {n}: {reply:?}");
                posted.fetch_add(1, Ordering::Relaxed);
                reply.body["id"].as_str().expect("message id").to_owned()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// How many requests each message id (`webhook-id` header) got.
pub fn count_by_message(received: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in received {
        let id = request
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<no webhook-id>")
            .to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// The ids of `expected` that `counts` has not seen.
pub fn missing<'a>(expected: &'a HashSet<String>, counts: &HashMap<String, usize>) -> Vec<&'a str> {
    expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .map(String::as_str)
        .collect()
}

/// A queue prefix no other test uses, recognisable as stale after a crash.
pub(crate) fn fresh_prefix() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{PREFIX_STEM}{now}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Whether a connection to the broker can be opened, within 5 s.
pub(crate) async fn rabbit_reachable(url: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), open_channel(url)).await {
        Ok(Ok((connection, _))) => {
            let _ = connection.close(200, "reachable".into()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connection timed out".to_owned()),
    }
}

async fn open_channel(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name("herald-e2e harness".into());
    let connection = Connection::connect(url, properties).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Deletes every queue and exchange of the topology with `prefix`.
async fn delete_topology(url: &str, prefix: &str) -> Result<(), String> {
    let names = herald_queue::Topology::new(prefix);
    let (connection, mut channel) = open_channel(url).await.map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for queue in names.queues() {
        if let Err(e) = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
        {
            failures.push(format!("queue {queue}: {e}"));
            // A channel error closes the channel; go on with a fresh one.
            channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for exchange in names.exchanges() {
        if let Err(e) = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await
        {
            failures.push(format!("exchange {exchange}: {e}"));
            channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let _ = connection.close(200, "test cleanup".into()).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Deletes a topology when dropped, from a private runtime on its own thread
/// (so it works during a panic and whether or not the test's runtime is alive).
pub(crate) struct RabbitCleanup {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Drop for RabbitCleanup {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let outcome = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), delete_topology(&url, &prefix)).await
            });
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("cleanup of RabbitMQ topology {prefix} failed: {e}"),
                Err(_) => eprintln!("cleanup of RabbitMQ topology {prefix} timed out"),
            }
        })
        .join();
    }
}

/// Deletes topologies of these tests older than [`STALE_AFTER`] (left by test
/// processes that were killed before their cleanup ran). Once per test
/// binary; needs `rabbitmqctl` to list queues, and does nothing without it.
pub(crate) async fn sweep_stale_topologies(url: &str) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    SWEPT.call_once(|| first = true);
    if !first {
        return;
    }
    let listed = tokio::task::spawn_blocking(|| {
        Command::new("rabbitmqctl")
            .args(["-q", "--timeout", "20", "list_queues", "name"])
            .stdin(Stdio::null())
            .output()
    })
    .await;
    let Ok(Ok(output)) = listed else { return };
    if !output.status.success() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let stale: HashSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let prefix = line.trim().split('.').next()?;
            let created: u64 = prefix
                .strip_prefix(PREFIX_STEM)?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            (now.saturating_sub(created) > STALE_AFTER.as_secs()).then(|| prefix.to_owned())
        })
        .collect();
    for prefix in stale {
        let _ = delete_topology(url, &prefix).await;
    }
}
