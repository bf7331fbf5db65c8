//! `herald-bench`: drives any Svix-compatible webhook server through its public
//! `/api/v1` API, with a closed loop of concurrent senders or an open loop at a
//! fixed rate, receives the deliveries on its own loopback receiver (whose
//! endpoints can be fast, slow or failing), and reports API accept and
//! end-to-end latency, throughput, duplicates, missing deliveries, signature
//! failures, the server's peak memory, its CPU time per message (and that of
//! other processes, and of the whole machine) and a pgbench ceiling. See
//! `docs/benchmarks.md`.
//!
//! The `ingest` scenario drives Herald's inbound webhooks instead of
//! `POST …/msg`: it registers a Stripe source (a Herald extension, `/api/v1/
//! source`) and posts Stripe-signed events to `/ingest/{source_id}`, which
//! Herald verifies and relays to one endpoint whose filter is a wildcard.
//!
//! `herald-bench floor-broker …` measures RabbitMQ's floor instead (see
//! `src/floor.rs`).

mod cpu;
mod floor;
mod pgbench;
mod receiver;
mod report;
mod rss;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::receiver::{Behaviour, Receiver};
use crate::report::{latency_histogram, rate, record_micros, round3, Percentiles, Report};

/// The event type every bench message carries.
const EVENT_TYPE: &str = "bench.event";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One fast endpoint: the maximum sustained message rate.
    Single,
    /// One message fanned out to ten fast endpoints.
    Fanout,
    /// Eight fast endpoints: the baseline of `mixed`.
    Fanout8,
    /// Eight fast endpoints, a slow one (--slow-delay-ms) and an always
    /// failing one: are the fast ones isolated from the others?
    Mixed,
    /// Inbound webhooks (Herald only): Stripe-signed events posted to
    /// `/ingest/{source_id}` of a Stripe source, relayed to one fast endpoint
    /// filtered on `payment_intent.*`.
    Ingest,
}

impl Scenario {
    fn behaviours(self, slow_delay_ms: u64) -> Vec<Behaviour> {
        let fast = |n| vec![Behaviour::Fast; n];
        match self {
            Scenario::Single | Scenario::Ingest => fast(1),
            Scenario::Fanout => fast(10),
            Scenario::Fanout8 => fast(8),
            Scenario::Mixed => {
                let mut all = fast(8);
                all.extend([Behaviour::Delay(slow_delay_ms), Behaviour::AlwaysFail]);
                all
            }
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Benchmarks a Svix-compatible webhook server through its public API.
#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    version,
    after_help = "`herald-bench floor-broker --help`: RabbitMQ's floor (batched publishes, \
                  deliveries and acks, without a server)."
)]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "HERALD_BENCH_SERVER_URL")]
    server_url: String,
    /// A tenant API key (Bearer token).
    #[arg(long, env = "HERALD_BENCH_TOKEN", hide_env_values = true)]
    token: String,
    /// What to run.
    #[arg(long, value_enum, default_value = "single")]
    scenario: Scenario,
    /// Instead of a scenario's endpoints, one endpoint per use of this option,
    /// answering as BEHAVIOUR says: fast, delay:MS, fail-first:N (500 to the
    /// first N arrivals of each message) or fail (always 500).
    #[arg(
        long = "endpoint",
        value_name = "BEHAVIOUR",
        conflicts_with = "scenario"
    )]
    endpoints: Vec<Behaviour>,
    /// Milliseconds the slow endpoint of the mixed scenario waits before its 200.
    #[arg(long, default_value_t = 1000)]
    slow_delay_ms: u64,
    /// Concurrent senders in the closed loop; also the pgbench clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open loop: send this many messages per second, on schedule, whether or
    /// not earlier sends were answered (--concurrency then sends nothing).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: the most API calls outstanding at once; a send due while
    /// this many are outstanding is skipped and counted.
    #[arg(long, default_value_t = 1024, requires = "rate")]
    max_in_flight: usize,
    /// Seconds to send for (ignored when --messages is given).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Send exactly this many messages instead of sending for --duration.
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Seconds to wait, after sending stops, for every delivery to arrive.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
    /// Pid of a server process whose memory to sample every 200 ms and whose
    /// CPU time to count (repeatable).
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Pid of another process whose CPU time to count, such as a PostgreSQL
    /// backend or RabbitMQ's beam.smp (repeatable).
    #[arg(long = "cpu-pid", value_name = "PID")]
    cpu_pids: Vec<u32>,
    /// Pid of a process whose CPU time to count together with that of all its
    /// descendants, such as PostgreSQL's postmaster (repeatable).
    #[arg(long = "cpu-pid-tree", value_name = "PID")]
    cpu_pid_trees: Vec<u32>,
    /// Before the load, measure the pgbench ceiling in this PostgreSQL
    /// database (postgres://…): two-insert and one-insert transactions/s.
    #[arg(long)]
    pgbench_url: Option<String>,
    /// Seconds each pgbench variant runs.
    #[arg(long, default_value_t = 10, requires = "pgbench_url")]
    pgbench_seconds: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Address of the receiver the endpoints point at.
    #[arg(long, default_value = "127.0.0.1:0")]
    receiver_addr: SocketAddr,
    /// Skip verifying the signature of each delivery.
    #[arg(long)]
    no_verify: bool,
}

/// Microseconds since the Unix epoch, by the wall clock (shared by the sender
/// and the receiver, which run in this one process).
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The server's API, as far as the bench needs it.
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?)
    }

    async fn post_ok(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self.post(path, body).await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: not JSON: {text}"))
    }

    async fn get_ok(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }
}

fn str_field(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field:?} in {value}"))
}

/// Creates the event type (an existing one is fine), an application and one
/// endpoint per receiver path; returns the app id and each endpoint's raw key.
async fn set_up(
    api: &Api,
    run_id: &str,
    receiver: SocketAddr,
    endpoints: usize,
    filter: Option<&[&str]>,
) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let res = api
        .post(
            "/event-type",
            &json!({"name": EVENT_TYPE, "description": "herald-bench messages"}),
        )
        .await?;
    let status = res.status();
    if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
        bail!("creating the event type: {status}: {}", res.text().await?);
    }
    let app = api
        .post_ok(
            "/app",
            &json!({"name": format!("herald-bench {run_id}"), "uid": run_id}),
        )
        .await?;
    let app_id = str_field(&app, "id")?;
    let mut secrets = Vec::with_capacity(endpoints);
    for index in 0..endpoints {
        let endpoint = api
            .post_ok(
                &format!("/app/{app_id}/endpoint"),
                &json!({
                    "url": format!("http://{receiver}/e/{index}"),
                    "uid": format!("ep-{index}"),
                    "description": "herald-bench receiver",
                    "filterTypes": filter,
                }),
            )
            .await?;
        let endpoint_id = str_field(&endpoint, "id")?;
        let secret = api
            .get_ok(&format!("/app/{app_id}/endpoint/{endpoint_id}/secret"))
            .await?;
        let key = herald_signature::parse_secret(&str_field(&secret, "key")?)
            .map_err(|e| anyhow::anyhow!("endpoint secret: {e}"))?;
        secrets.push(key);
    }
    Ok((app_id, secrets))
}

/// The payload of message `seq`, sent (or due to be sent) at `sent_at_us`.
fn payload(seq: u64, sent_at_us: u64) -> Value {
    json!({"seq": seq, "sentAtUs": sent_at_us})
}

/// The event type of the ingest scenario's events, and its endpoint's filter.
const INGEST_EVENT_TYPE: &str = "payment_intent.succeeded";
const INGEST_FILTER: &[&str] = &["payment_intent.*"];

/// Creates a Stripe source of `app_id` with a fresh secret; its ingest URL
/// and the secret's bytes (what Stripe keys its signature with).
async fn set_up_source(api: &Api, app_id: &str, run_id: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let secret = format!("whsec_{run_id}");
    let source = api
        .post_ok(
            "/source",
            &json!({"appId": app_id, "provider": "stripe", "secret": secret,
                    "description": "herald-bench"}),
        )
        .await?;
    let id = str_field(&source, "id")?;
    Ok((format!("{}/ingest/{id}", api.base), secret.into_bytes()))
}

/// Where the load goes.
enum Target {
    /// `POST /api/v1/app/{app}/msg` with the tenant's key.
    Messages { path: String },
    /// `POST /ingest/{source_id}`, each body a Stripe event signed as Stripe
    /// signs (`Stripe-Signature`, the current second).
    Ingest { url: String, secret: Vec<u8> },
}

/// Shared by every send.
struct Load {
    api: Api,
    target: Target,
    run_id: String,
    /// When sending began, by both clocks.
    started: Instant,
    started_us: u64,
    /// How long to send for, unless `max_messages` is set.
    duration: Duration,
    max_messages: Option<u64>,
}

impl Load {
    /// Whether a send due `offset` after the start, of message `seq`, is past
    /// the end of the load.
    fn over(&self, seq: u64, offset: Duration) -> bool {
        match self.max_messages {
            Some(max) => seq >= max,
            None => offset >= self.duration,
        }
    }

    /// Posts message `seq`; `Err` names the kind of failure.
    async fn send(&self, seq: u64, sent_at_us: u64) -> Result<(), String> {
        let sent = match &self.target {
            Target::Messages { path } => {
                let body = json!({
                    "eventType": EVENT_TYPE,
                    "eventId": format!("{}-{seq}", self.run_id),
                    "payload": payload(seq, sent_at_us),
                });
                self.api.post(path, &body).await
            }
            Target::Ingest { url, secret } => {
                // A Stripe event's shape, with the fields the receiver reads.
                let body = json!({
                    "id": format!("evt_{}_{seq}", self.run_id),
                    "object": "event",
                    "type": INGEST_EVENT_TYPE,
                    "seq": seq,
                    "sentAtUs": sent_at_us,
                    "data": {"object": {"id": format!("pi_{seq}"), "amount": 2000, "currency": "usd"}},
                })
                .to_string();
                let now = (unix_micros() / 1_000_000) as i64;
                let signature = herald_signature::stripe::header(&[secret], now, body.as_bytes())
                    .map_err(|_| "signing".to_owned())?;
                self.api
                    .client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(herald_signature::stripe::HEADER, signature)
                    .body(body)
                    .send()
                    .await
                    .map_err(anyhow::Error::from)
            }
        };
        let res = sent.map_err(|_| "transport".to_owned())?;
        let status = res.status();
        // Read the answer so the connection goes back to the pool.
        let read = res.bytes().await;
        match (status.is_success(), read) {
            (true, Ok(_)) => Ok(()),
            (true, Err(_)) => Err("transport".to_owned()),
            (false, _) => Err(format!("http {}", status.as_u16())),
        }
    }
}

/// What the sends measured.
struct Tally {
    sent: u64,
    accepted: Vec<u64>,
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    skipped: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            sent: 0,
            accepted: Vec::new(),
            latency: latency_histogram(),
            errors: BTreeMap::new(),
            skipped: 0,
        }
    }

    /// One send of message `seq`: its API latency, or its kind of failure.
    fn record(&mut self, seq: u64, outcome: Result<Duration, String>) {
        self.sent += 1;
        match outcome {
            Ok(latency) => {
                record_micros(&mut self.latency, latency.as_micros() as u64);
                self.accepted.push(seq);
            }
            Err(kind) => *self.errors.entry(kind).or_insert(0) += 1,
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.accepted.extend(other.accepted);
        self.latency.add(&other.latency)?;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_insert(0) += n;
        }
        self.skipped += other.skipped;
        Ok(())
    }
}

/// Closed loop: `concurrency` senders each post their next message once the
/// last is answered.
async fn closed_loop(load: Arc<Load>, concurrency: usize) -> anyhow::Result<Tally> {
    let next = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..concurrency)
        .map(|_| {
            let (load, next) = (load.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if load.over(seq, load.started.elapsed()) {
                        break tally;
                    }
                    let started = Instant::now();
                    let outcome = load.send(seq, unix_micros()).await;
                    tally.record(seq, outcome.map(|()| started.elapsed()));
                }
            })
        })
        .collect();
    let mut total = Tally::new();
    for sender in senders {
        total.merge(sender.await?)?;
    }
    Ok(total)
}

/// Open loop: message `seq` is due `seq / rate` seconds after the start and is
/// sent then, in a task of its own, however many earlier sends are still
/// unanswered (up to `max_in_flight`). Latencies count from the due time, not
/// from when the send actually started, so a stalled server cannot hide its
/// stall by slowing the sender down (coordinated omission).
async fn open_loop(load: Arc<Load>, rate: f64, max_in_flight: usize) -> anyhow::Result<Tally> {
    let mut tally = Tally::new();
    let mut in_flight = JoinSet::new();
    for seq in 0u64.. {
        let offset = Duration::from_secs_f64(seq as f64 / rate);
        if load.over(seq, offset) {
            break;
        }
        let due = load.started + offset;
        tokio::time::sleep_until(due.into()).await;
        while let Some(done) = in_flight.try_join_next() {
            let (seq, outcome) = done?;
            tally.record(seq, outcome);
        }
        if in_flight.len() >= max_in_flight {
            tally.skipped += 1;
            continue;
        }
        let load = load.clone();
        let due_us = load.started_us + offset.as_micros() as u64;
        in_flight.spawn(async move {
            let outcome = load.send(seq, due_us).await;
            (seq, outcome.map(|()| due.elapsed()))
        });
    }
    while let Some(done) = in_flight.join_next().await {
        let (seq, outcome) = done?;
        tally.record(seq, outcome);
    }
    Ok(tally)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "floor-broker")
    {
        return floor::run(floor::FloorArgs::parse_from(std::env::args_os().skip(1))).await;
    }
    let args = Args::parse();
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number");
    }
    if args.max_in_flight == 0 {
        bail!("--max-in-flight must be at least 1");
    }
    let (scenario, behaviours) = if args.endpoints.is_empty() {
        (
            args.scenario.name(),
            args.scenario.behaviours(args.slow_delay_ms),
        )
    } else {
        ("custom".to_owned(), args.endpoints.clone())
    };
    let endpoints = behaviours.len();
    let verify = !args.no_verify;
    let run_id = format!("bench-{}", unix_micros());

    // The reference ceiling first, so it does not compete with the load.
    let mut pgbench = match &args.pgbench_url {
        Some(url) => {
            let sample = payload(1_000_000, unix_micros()).to_string();
            Some(
                pgbench::run(
                    url,
                    args.concurrency,
                    args.pgbench_seconds,
                    sample.as_bytes(),
                )
                .await?,
            )
        }
        None => None,
    };

    let api = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(match args.rate {
                Some(_) => args.max_in_flight,
                None => args.concurrency,
            })
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.server_url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    let receiver = Receiver::new(verify, behaviours.clone());
    let receiver_addr = receiver::start(receiver.clone(), args.receiver_addr).await?;
    let ingest = args.endpoints.is_empty() && args.scenario == Scenario::Ingest;
    let filter = ingest.then_some(INGEST_FILTER);
    let (app_id, secrets) = set_up(&api, &run_id, receiver_addr, endpoints, filter).await?;
    receiver.set_secrets(secrets);
    let target = match ingest {
        true => {
            let (url, secret) = set_up_source(&api, &app_id, &run_id).await?;
            Target::Ingest { url, secret }
        }
        false => Target::Messages {
            path: format!("/app/{app_id}/msg"),
        },
    };
    eprintln!(
        "herald-bench: app {app_id}, {endpoints} endpoint(s) on http://{receiver_addr}, \
         scenario {scenario}, {}, {}",
        match args.rate {
            Some(rate) => format!("{rate} msg/s"),
            None => format!("concurrency {}", args.concurrency),
        },
        match args.messages {
            Some(n) => format!("{n} messages"),
            None => format!("{} s", args.duration),
        }
    );

    let memory = (!args.server_pids.is_empty()).then(|| rss::Sampler::start(&args.server_pids));
    let cpu = cpu::Sampler::start(&args.server_pids, &args.cpu_pids, &args.cpu_pid_trees);
    let load = Arc::new(Load {
        api,
        target,
        run_id,
        started: Instant::now(),
        started_us: unix_micros(),
        duration: Duration::from_secs(args.duration),
        max_messages: args.messages,
    });
    let tally = match args.rate {
        Some(rate) => open_loop(load.clone(), rate, args.max_in_flight).await?,
        None => closed_loop(load.clone(), args.concurrency).await?,
    };
    let send_secs = load.started.elapsed().as_secs_f64();
    let accepted: HashSet<u64> = tally.accepted.iter().copied().collect();

    // Wait for every delivery expected to succeed (not the failing
    // endpoints'), or the deadline.
    let succeeding = behaviours.iter().filter(|b| b.succeeds()).count() as u64;
    let expected = accepted.len() as u64 * succeeding;
    let deadline = Instant::now() + Duration::from_secs(args.deadline);
    let deadline_reached = loop {
        if receiver.delivered() >= expected && receiver.delivered_of(&accepted).0 >= expected {
            break false;
        }
        if Instant::now() >= deadline {
            break true;
        }
        tokio::time::sleep(receiver::POLL).await;
    };
    let server_memory = match memory {
        Some(sampler) => Some(sampler.finish().await?),
        None => None,
    };
    let cpu = cpu.finish();

    let (delivered, unexpected) = receiver.delivered_of(&accepted);
    let recorded = receiver.recorded.lock().expect("receiver lock");
    let delivery_secs =
        recorded.last_arrival_us.saturating_sub(load.started_us) as f64 / 1_000_000.0;
    let mut end_to_end = latency_histogram();
    let mut by_behaviour: BTreeMap<Behaviour, Histogram<u64>> = BTreeMap::new();
    let mut endpoint_behaviours: BTreeMap<Behaviour, usize> = BTreeMap::new();
    let mut failing_endpoint_attempts = 0;
    for (index, behaviour) in behaviours.iter().enumerate() {
        *endpoint_behaviours.entry(*behaviour).or_insert(0) += 1;
        if !behaviour.succeeds() {
            failing_endpoint_attempts += recorded.arrivals[index];
            continue;
        }
        let hist = &recorded.end_to_end[index];
        end_to_end.add(hist)?;
        by_behaviour
            .entry(*behaviour)
            .or_insert_with(latency_histogram)
            .add(hist)?;
    }
    let accept_throughput = rate(accepted.len() as u64, send_secs);
    if let Some(pg) = &mut pgbench {
        pg.accept_fraction_of_two_insert = Some(round3(accept_throughput / pg.two_insert_tps));
    }
    let report = Report {
        server_url: load.api.base.clone(),
        scenario,
        endpoints,
        endpoint_behaviours,
        concurrency: args.concurrency,
        target_rate_per_sec: args.rate,
        max_in_flight: args.rate.map(|_| args.max_in_flight),
        sends_skipped: tally.skipped,
        verify_signatures: verify,
        send_secs: round3(send_secs),
        messages_sent: tally.sent,
        messages_accepted: accepted.len() as u64,
        api_errors: tally.errors.values().sum(),
        api_error_kinds: tally.errors,
        accept_throughput_per_sec: accept_throughput,
        api_latency: Percentiles::from_micros(&tally.latency),
        deliveries_expected: expected,
        deliveries_received: delivered,
        delivery_secs: round3(delivery_secs),
        deliveries_per_sec: rate(delivered, delivery_secs),
        end_to_end_latency: Percentiles::from_micros(&end_to_end),
        end_to_end_by_behaviour: by_behaviour
            .iter()
            .map(|(behaviour, hist)| (*behaviour, Percentiles::from_micros(hist)))
            .collect(),
        duplicates: recorded.duplicates,
        missing_deliveries: expected.saturating_sub(delivered),
        unexpected_deliveries: unexpected + recorded.unreadable,
        error_answers: recorded.error_answers,
        failing_endpoint_attempts,
        signature_failures: recorded.signature_failures,
        deadline_reached,
        server_memory,
        cpu: cpu.with_costs(accepted.len() as u64, delivered),
        pgbench,
    };
    drop(recorded);

    print!("{}", report::render_table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("herald-bench: results written to {}", path.display());
    }
    Ok(())
}
