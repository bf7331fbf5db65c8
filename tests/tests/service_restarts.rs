//! Nothing accepted is lost when a backing service restarts mid-burst, in the
//! production topology (an API process and a separate worker process of the
//! real binary, over PostgreSQL and RabbitMQ):
//!
//! - PostgreSQL is stopped (fast shutdown) while a burst is being posted and
//!   delivered, and started again a few seconds later. The API may answer
//!   posts 503 while it is down; every post it answered 202 must arrive.
//! - RabbitMQ's application is stopped (`rabbitmqctl stop_app`) and started
//!   again. The API does not use RabbitMQ, so every post is accepted; the
//!   worker must reconnect by itself and deliver all of them.
//!
//! Neither the API nor the worker is restarted: they have to recover alone.
//!
//! In its own test binary, and the tests run one at a time, because they stop
//! services that every other test uses (cargo runs test binaries one after
//! another). A drop guard starts a stopped service again also when an
//! assertion fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_e2e::receiver::Receiver;
use herald_e2e::topology::{amqp_url, TopologyOptions};
use herald_e2e::topology::{count_by_message, create_app, missing, unfinished, Topology};
use herald_e2e::{postgres_admin_url, skip_or_fail, Herald};
use serde_json::json;
use sqlx::Connection;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BURST: usize = 1500;
const POST_CONCURRENCY: usize = 16;
/// The service is restarted once this many deliveries have arrived.
const DISRUPT_AFTER: usize = BURST / 10;
/// Bound on every message arriving (and on the deliveries finishing) after
/// the service is back.
const DELIVERY_LIMIT: Duration = Duration::from_secs(120);
/// Bound on each service command (stop, start, status).
const COMMAND_LIMIT: Duration = Duration::from_secs(90);

/// The local cluster, as `pg_ctlcluster` names it (the version directory and `main`).
const PG_CLUSTER: &str =
    "pg_ctlcluster --skip-systemctl-redirect \"$(ls /etc/postgresql | head -n 1)\" main";

/// How long the service stays down after the stop command returned. For
/// PostgreSQL a little longer than the API's pool acquire timeout (5 s), so
/// that posts waiting for a connection time out too, not only the ones whose
/// connection the shutdown terminated.
fn downtime(service: Service) -> Duration {
    match service {
        Service::Postgres => Duration::from_secs(6),
        Service::Rabbit => Duration::from_secs(3),
    }
}

/// A short lease, so that deliveries whose tasks a restart lost come back soon.
fn options() -> TopologyOptions {
    TopologyOptions {
        delivery_timeout: 5,
        delivery_lease: 10,
        ..TopologyOptions::default()
    }
}

// ---------------------------------------------------------------- services

/// A backing service these tests restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Postgres,
    Rabbit,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Rabbit => "RabbitMQ",
        }
    }

    /// The commands that stop and start it, as `(program, args)`.
    fn stop_command(self) -> Vec<(String, Vec<String>)> {
        match self {
            Self::Postgres => vec![bash(&format!("{PG_CLUSTER} stop --mode fast"))],
            Self::Rabbit => vec![rabbitmqctl(&["stop_app"])],
        }
    }

    fn start_command(self) -> Vec<(String, Vec<String>)> {
        match self {
            // `start` waits until the server accepts connections.
            Self::Postgres => vec![bash(&format!("{PG_CLUSTER} start"))],
            Self::Rabbit => vec![rabbitmqctl(&["start_app"]), rabbitmqctl(&["await_startup"])],
        }
    }

    /// Whether the tool is there and the service is running: `Err` says why not.
    async fn usable(self) -> Result<(), String> {
        let (program, args) = match self {
            Self::Postgres => bash(&format!(
                "command -v pg_ctlcluster >/dev/null && {PG_CLUSTER} status"
            )),
            Self::Rabbit => rabbitmqctl(&["await_startup"]),
        };
        run(&program, &args, COMMAND_LIMIT).await.map(|_| ())
    }

    async fn stop(self) -> Result<(), String> {
        for (program, args) in self.stop_command() {
            run(&program, &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }

    async fn start(self) -> Result<(), String> {
        for (program, args) in self.start_command() {
            run(&program, &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }

    /// Whether a client can connect and talk to it right now (within 1 s).
    async fn reachable(self) -> bool {
        let check = async {
            match self {
                Self::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                        .await
                        .ok()?;
                    let one: i32 = sqlx::query_scalar("SELECT 1")
                        .fetch_one(&mut conn)
                        .await
                        .ok()?;
                    let _ = conn.close().await;
                    Some(one == 1)
                }
                Self::Rabbit => {
                    let connection = lapin::Connection::connect(
                        &amqp_url(),
                        lapin::ConnectionProperties::default(),
                    )
                    .await
                    .ok()?;
                    let _ = connection.close(200, "reachable".into()).await;
                    Some(true)
                }
            }
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), check).await,
            Ok(Some(true))
        )
    }

    /// Polls [`Service::reachable`] every 100 ms until it has been seen down
    /// and then up again (at most `limit`); returns when it was first seen
    /// down and first seen up again.
    async fn watch(self, limit: Duration) -> (Option<Instant>, Option<Instant>) {
        let deadline = Instant::now() + limit;
        let mut down = None;
        while Instant::now() < deadline {
            let checked = Instant::now();
            match (self.reachable().await, down) {
                (false, None) => down = Some(checked),
                (true, Some(_)) => return (down, Some(checked)),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (down, None)
    }
}

/// Whether `queue` exists on the broker (a passive declare).
async fn queue_exists(queue: &str) -> Result<bool, String> {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let declared = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..lapin::options::QueueDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
    Ok(declared.is_ok())
}

fn bash(script: &str) -> (String, Vec<String>) {
    ("bash".to_owned(), vec!["-c".to_owned(), script.to_owned()])
}

fn rabbitmqctl(args: &[&str]) -> (String, Vec<String>) {
    (
        "rabbitmqctl".to_owned(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    )
}

/// Runs a command to completion within `limit`; `Ok(stdout)` if it succeeded.
async fn run(program: &str, args: &[String], limit: Duration) -> Result<String, String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, command.output()).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => Err(format!(
            "{program} {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Ok(Err(e)) => Err(format!("cannot run {program}: {e}")),
        Err(_) => Err(format!(
            "{program} {args:?} did not finish within {limit:?}"
        )),
    }
}

/// The same without a runtime, for `Drop`.
fn run_blocking(program: &str, args: &[String], limit: Duration) -> Result<(), String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} {args:?} failed ({status})")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} {args:?} did not finish within {limit:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
}

/// Starts the service again when dropped while it may be down, so a failed
/// assertion (or a panic anywhere) never leaves it stopped for other tests.
struct Restore {
    service: Service,
    maybe_down: bool,
}

impl Restore {
    fn new(service: Service) -> Self {
        Self {
            service,
            maybe_down: false,
        }
    }

    async fn stop(&mut self) -> Result<(), String> {
        self.maybe_down = true;
        self.service.stop().await
    }

    async fn start(&mut self) -> Result<(), String> {
        self.service.start().await?;
        self.maybe_down = false;
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.maybe_down {
            return;
        }
        eprintln!("starting {} again after a failure", self.service.name());
        for (program, args) in self.service.start_command() {
            // `pg_ctlcluster start` fails on a running cluster: harmless here.
            if let Err(e) = run_blocking(&program, &args, COMMAND_LIMIT) {
                eprintln!("restoring {}: {e}", self.service.name());
            }
        }
    }
}

// ---------------------------------------------------------------- posting

/// What one post got back.
#[derive(Clone, Debug)]
struct Post {
    /// When the answer (or the transport error) came.
    at: Instant,
    /// The HTTP status, or `None` for a transport error (no answer at all).
    status: Option<u16>,
    /// The message id of an accepted post.
    id: Option<String>,
    /// The body of a refused post, or the transport error.
    detail: String,
}

/// Every post's outcome, in the order they were answered.
#[derive(Default)]
struct PostLog {
    posts: Mutex<Vec<Post>>,
}

impl PostLog {
    fn record(&self, post: Post) {
        self.posts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(post);
    }

    fn all(&self) -> Vec<Post> {
        self.posts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn answered(&self) -> usize {
        self.posts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The ids of the accepted posts.
    fn accepted_ids(&self) -> HashSet<String> {
        self.all().into_iter().filter_map(|p| p.id).collect()
    }

    /// How many posts got each status (`"transport error"` for no answer).
    fn statuses(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for post in self.all() {
            let key = post
                .status
                .map_or_else(|| "transport error".to_owned(), |s| s.to_string());
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// One example of each answer other than 202.
    fn examples(&self) -> BTreeMap<String, String> {
        let mut examples = BTreeMap::new();
        for post in self.all() {
            if post.status != Some(202) {
                let key = post
                    .status
                    .map_or_else(|| "transport error".to_owned(), |s| s.to_string());
                examples.entry(key).or_insert(post.detail);
            }
        }
        examples
    }
}

/// Posts one message (`n` in its payload) and records what came back;
/// returns the message id if it was accepted.
async fn post_one(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    n: usize,
    log: &PostLog,
) -> Option<String> {
    let sent = http
        .post(url)
        .bearer_auth(key)
        .json(&json!({"eventType": "burst", "payload": {"n": n}}))
        .send()
        .await;
    let post = match sent {
        Ok(response) => {
            let reply = Herald::reply(response).await;
            let status = reply.status.as_u16();
            if status == 503 {
                // A refusal says when to come back.
                assert_eq!(
                    reply
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "a 503 without Retry-After: {reply:?}"
                );
            }
            Post {
                at: Instant::now(),
                status: Some(status),
                id: (status == 202)
                    .then(|| reply.body["id"].as_str().map(str::to_owned))
                    .flatten(),
                detail: reply.body.to_string(),
            }
        }
        Err(e) => Post {
            at: Instant::now(),
            status: None,
            id: None,
            detail: e.to_string(),
        },
    };
    let id = post.id.clone();
    log.record(post);
    id
}

/// Posts `count` messages, `concurrency` at a time, recording every answer
/// (refusals included) in `log`. Owns everything, to run in its own task.
async fn post_burst(
    base_url: String,
    key: String,
    app: String,
    count: usize,
    concurrency: usize,
    log: Arc<PostLog>,
) {
    let http = client(concurrency);
    let url = format!("{base_url}/api/v1/app/{app}/msg");
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |n| {
            let (http, url, key, log) = (&http, &url, &key, &log);
            async move {
                post_one(http, url, key, n, log).await;
            }
        })
        .await;
}

fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(pool)
        .build()
        .expect("http client")
}

// ---------------------------------------------------------------- the scenario

/// Lines of `log` that contain `needle`.
fn occurrences(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

/// Posts a burst to one fast endpoint, restarts `service` once some but not
/// all of it has arrived, and checks that every accepted message arrives and
/// no delivery is left unfinished, without restarting API or worker.
async fn burst_across_restart_of(service: Service) {
    let _serial = SERIAL.lock().await;
    if let Err(why) = service.usable().await {
        let _: Option<()> = skip_or_fail(service.name(), &format!("cannot restart it: {why}"));
        return;
    }
    let Some(mut topology) = Topology::start(options()).await else {
        return;
    };
    let receiver = Receiver::start().await;
    create_app(&topology.api, "burst", &[receiver.url("fast")]).await;

    let started = Instant::now();
    let log = Arc::new(PostLog::default());
    let posting = tokio::spawn(post_burst(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "burst".to_owned(),
        BURST,
        POST_CONCURRENCY,
        log.clone(),
    ));

    let arrived = receiver
        .wait_for("fast", DISRUPT_AFTER, Duration::from_secs(90))
        .await
        .len();
    assert!(
        arrived >= DISRUPT_AFTER,
        "only {arrived} deliveries within 90 s before any disruption; logs:\n{}",
        topology.logs()
    );

    // Declared after the topology, so it is dropped (and the service started)
    // before the topology's cleanup needs the service.
    let mut restore = Restore::new(service);
    let before = (
        count_by_message(&receiver.received("fast")).len(),
        log.answered(),
    );
    let watcher = tokio::spawn(service.watch(Duration::from_secs(240)));
    let stopping = Instant::now();
    restore
        .stop()
        .await
        .unwrap_or_else(|e| panic!("stopping {}: {e}", service.name()));
    let stopped = Instant::now();
    tokio::time::sleep(downtime(service)).await;
    let starting = Instant::now();
    restore
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting {}: {e}", service.name()));
    let up = Instant::now();
    let (went_down, came_back) = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (Some(went_down), Some(came_back)) = (went_down, came_back) else {
        panic!(
            "{} was not seen down and up again (down at {went_down:?}, up at {came_back:?}): \
             did the test restart another one than the tests use?",
            service.name()
        );
    };
    let at_restart = (
        count_by_message(&receiver.received("fast")).len(),
        log.answered(),
    );

    // The API recovers by itself: a post made now is accepted (soon) and arrives.
    let probe_http = client(1);
    let probe_url = format!("{}/api/v1/app/burst/msg", topology.api.url);
    let api_deadline = up + Duration::from_secs(60);
    let probe_id = loop {
        if let Some(id) = post_one(
            &probe_http,
            &probe_url,
            &topology.api.tenant.key,
            BURST,
            &log,
        )
        .await
        {
            break id;
        }
        assert!(
            Instant::now() < api_deadline,
            "the API did not accept a post within 60 s after {} came back: {:?}; logs:\n{}",
            service.name(),
            log.all().last(),
            topology.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let api_recovered = up.elapsed();

    let posted = tokio::time::timeout(Duration::from_secs(180), posting).await;
    assert!(
        matches!(posted, Ok(Ok(()))),
        "posting the burst did not finish within 180 s: {posted:?}; logs:\n{}",
        topology.logs()
    );
    let posted_in = started.elapsed();
    let expected = log.accepted_ids();
    let statuses = log.statuses();
    let examples = log.examples();
    let refusals: Vec<Duration> = log
        .all()
        .iter()
        .filter(|p| p.status != Some(202))
        .map(|p| p.at.saturating_duration_since(stopping))
        .collect();
    let summary = format!(
        "{} stopped at (arrived, answered) {before:?} and back at {at_restart:?} of {BURST}; \
         stop took {:?}, start took {:?}; unreachable from {:?} to {:?} after the stop began \
         ({:?}); answers to posts: {statuses:?}, \
         {} accepted; answers other than 202 came {:?}..{:?} after the stop began; \
         examples: {examples:?}",
        service.name(),
        stopped - stopping,
        up - starting,
        went_down.saturating_duration_since(stopping),
        came_back.saturating_duration_since(stopping),
        came_back.saturating_duration_since(went_down),
        expected.len(),
        refusals.iter().min(),
        refusals.iter().max(),
    );

    // Every accepted message arrives at least once, within the bound.
    let deadline = up + DELIVERY_LIMIT;
    let mut probe_arrived = None;
    let counts = loop {
        let counts = count_by_message(&receiver.received("fast"));
        if probe_arrived.is_none() && counts.contains_key(&probe_id) {
            probe_arrived = Some(up.elapsed());
        }
        if missing(&expected, &counts).is_empty() || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let all_in = started.elapsed();
    let lost = missing(&expected, &counts);
    assert!(
        lost.is_empty(),
        "{} of {} accepted messages never arrived within {DELIVERY_LIMIT:?} after {} came back \
         (e.g. {:?}); deliveries by state: {:?}; {summary}; logs:\n{}",
        lost.len(),
        expected.len(),
        service.name(),
        &lost[..lost.len().min(5)],
        topology.delivery_states().await,
        topology.logs()
    );

    // Nothing is left pending or sending, and nothing was given up on.
    let states = topology
        .wait_until_deliveries_finished(DELIVERY_LIMIT.saturating_sub(up.elapsed()))
        .await;
    assert_eq!(
        unfinished(&states),
        0,
        "deliveries left unfinished: {states:?}; {summary}; logs:\n{}",
        topology.logs()
    );
    let succeeded = states.get("succeeded").copied().unwrap_or(0);
    assert!(
        states.keys().all(|s| s == "succeeded") && succeeded >= expected.len() as i64,
        "every delivery of an always-200 endpoint succeeds: {states:?}; {summary}; logs:\n{}",
        topology.logs()
    );
    let finished_in = started.elapsed();

    // Answers during the outage: 202 or 503 for PostgreSQL, only 202 for
    // RabbitMQ (the API does not use it); never a 500, never no answer.
    let allowed: &[&str] = match service {
        Service::Postgres => &["202", "503"],
        Service::Rabbit => &["202"],
    };
    assert!(
        statuses.keys().all(|s| allowed.contains(&s.as_str())),
        "the API answered posts with something other than {allowed:?}: {summary}; api log:\n{}",
        topology.logs()
    );

    // Neither process was restarted, and both are still running.
    assert!(
        topology.api.is_running(),
        "the API process exited; logs:\n{}",
        topology.logs()
    );
    assert_eq!(
        topology.live_workers(),
        1,
        "the worker process exited; logs:\n{}",
        topology.logs()
    );

    let api_log = topology.api.log();
    let worker_log = topology.worker_log(1);
    let mut events = BTreeMap::new();
    for (what, text, needle) in [
        (
            "api: dependency unavailable",
            &api_log,
            "dependency unavailable",
        ),
        ("api: internal error", &api_log, "internal error"),
        ("worker: relay failed", &worker_log, "outbox relay failed"),
        (
            "worker: task failed",
            &worker_log,
            "task failed; retrying it later",
        ),
        ("worker: ack failed", &worker_log, "ack failed"),
        (
            "worker: consumer lost",
            &worker_log,
            "consumer connection lost",
        ),
        (
            "worker: consumer cancelled",
            &worker_log,
            "consumer cancelled by the broker",
        ),
        (
            "worker: consumer reconnect failed",
            &worker_log,
            "consumer reconnect failed",
        ),
        (
            "worker: consumer resubscribed",
            &worker_log,
            "consumer resubscribed",
        ),
        (
            "worker: publish retried",
            &worker_log,
            "publish to rabbitmq failed",
        ),
        (
            "worker: publisher reconnected",
            &worker_log,
            "publisher reconnected",
        ),
        (
            "worker: gave up publishing",
            &worker_log,
            "giving up publishing",
        ),
    ] {
        let n = occurrences(text, needle);
        if n > 0 {
            events.insert(what, n);
        }
    }
    if service == Service::Rabbit {
        assert!(
            events.contains_key("worker: consumer resubscribed"),
            "the worker's consumer did not report resubscribing: {events:?}; logs:\n{}",
            topology.logs()
        );
    }

    let total: usize = counts.values().sum();
    let duplicates: HashMap<usize, usize> = counts.values().fold(HashMap::new(), |mut by, &n| {
        if n > 1 {
            *by.entry(n).or_insert(0) += 1;
        }
        by
    });
    let messages = topology.api.count_rows("message").await;
    eprintln!(
        "\n=== {} restart: {summary}\n    API accepted again {api_recovered:?} after it was back; \
         the probe arrived {probe_arrived:?} after; all posted after {posted_in:?}, all \
         arrived after {all_in:?}, all deliveries finished after {finished_in:?}; \
         {total} requests for {} messages: {} duplicates (messages by times received: \
         {duplicates:?}); {messages} messages stored for {} accepted posts; log events: \
         {events:?}\n",
        service.name(),
        counts.len(),
        total - counts.len(),
        expected.len(),
    );

    // The harness still works against the restarted services: dropping the
    // topology drops its database (through the admin connection) and deletes
    // its queues.
    let database = topology.api.db.name.clone();
    let queue = topology.names().deliveries;
    drop(restore);
    drop(topology);
    assert_eq!(
        queue_exists(&queue).await,
        Ok(false),
        "the topology's queue {queue} was not deleted"
    );
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("the admin connection works after the restart");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    assert_eq!(left, 0, "the test database {database} was not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_message_arrives_although_postgresql_restarts_mid_burst() {
    burst_across_restart_of(Service::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_arrives_although_rabbitmq_restarts_mid_burst() {
    burst_across_restart_of(Service::Rabbit).await;
}
