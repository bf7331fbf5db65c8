//! `herald-bench`: drives any Svix-compatible webhook server through its public
//! `/api/v1` API with a closed loop of concurrent senders, receives the
//! deliveries on its own loopback receiver, and reports API accept and
//! end-to-end latency, throughput, duplicates, missing deliveries and signature
//! failures. See `docs/benchmarks.md`.

mod receiver;
mod report;

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

use crate::receiver::Receiver;
use crate::report::{latency_histogram, rate, record_micros, round3, Percentiles, Report};

/// The event type every bench message carries.
const EVENT_TYPE: &str = "bench.event";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One endpoint: the maximum sustained message rate.
    Single,
    /// One message fanned out to ten endpoints.
    Fanout,
}

impl Scenario {
    fn endpoints(self) -> usize {
        match self {
            Scenario::Single => 1,
            Scenario::Fanout => 10,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Single => "single",
            Scenario::Fanout => "fanout",
        }
    }
}

/// Benchmarks a Svix-compatible webhook server through its public API.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version)]
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
    /// Concurrent senders in the closed loop.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to send for (ignored when --messages is given).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Send exactly this many messages instead of sending for --duration.
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Seconds to wait, after sending stops, for every delivery to arrive.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
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

/// Shared by the senders of the closed loop.
struct Load {
    api: Api,
    msg_path: String,
    run_id: String,
    next: AtomicU64,
    max_messages: Option<u64>,
    stop_at: Option<Instant>,
}

/// What one sender measured.
struct SenderResult {
    sent: u64,
    accepted: Vec<u64>,
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

async fn sender(load: Arc<Load>) -> SenderResult {
    let mut result = SenderResult {
        sent: 0,
        accepted: Vec::new(),
        latency: latency_histogram(),
        errors: BTreeMap::new(),
    };
    loop {
        if load.stop_at.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let seq = load.next.fetch_add(1, Ordering::Relaxed);
        if load.max_messages.is_some_and(|max| seq >= max) {
            break;
        }
        let sent_at_us = unix_micros();
        let body = json!({
            "eventType": EVENT_TYPE,
            "eventId": format!("{}-{seq}", load.run_id),
            "payload": {"seq": seq, "sentAtUs": sent_at_us},
        });
        let started = Instant::now();
        let outcome = match load.api.post(&load.msg_path, &body).await {
            Ok(res) => {
                let status = res.status();
                // Read the answer so the connection goes back to the pool.
                let read = res.bytes().await;
                match (status.is_success(), read) {
                    (true, Ok(_)) => Ok(()),
                    (true, Err(_)) => Err("transport".to_owned()),
                    (false, _) => Err(format!("http {}", status.as_u16())),
                }
            }
            Err(_) => Err("transport".to_owned()),
        };
        result.sent += 1;
        match outcome {
            Ok(()) => {
                record_micros(&mut result.latency, started.elapsed().as_micros() as u64);
                result.accepted.push(seq);
            }
            Err(kind) => *result.errors.entry(kind).or_insert(0) += 1,
        }
    }
    result
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let endpoints = args.scenario.endpoints();
    let verify = !args.no_verify;
    let run_id = format!("bench-{}", unix_micros());
    let api = Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.server_url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };

    let receiver = Receiver::new(verify);
    let receiver_addr = receiver::start(receiver.clone(), args.receiver_addr).await?;
    let (app_id, secrets) = set_up(&api, &run_id, receiver_addr, endpoints).await?;
    receiver.set_secrets(secrets);
    eprintln!(
        "herald-bench: app {app_id}, {endpoints} endpoint(s) on http://{receiver_addr}, \
         scenario {}, concurrency {}, {}",
        args.scenario.name(),
        args.concurrency,
        match args.messages {
            Some(n) => format!("{n} messages"),
            None => format!("{} s", args.duration),
        }
    );

    // Closed loop: each sender posts its next message once the last is answered.
    let load_started_us = unix_micros();
    let load_started = Instant::now();
    let load = Arc::new(Load {
        api,
        msg_path: format!("/app/{app_id}/msg"),
        run_id,
        next: AtomicU64::new(0),
        max_messages: args.messages,
        stop_at: match args.messages {
            Some(_) => None,
            None => Some(load_started + Duration::from_secs(args.duration)),
        },
    });
    let senders: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(sender(load.clone())))
        .collect();
    let mut sent = 0;
    let mut accepted = HashSet::new();
    let mut api_latency = latency_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for handle in senders {
        let result = handle.await?;
        sent += result.sent;
        accepted.extend(result.accepted);
        api_latency.add(&result.latency)?;
        for (kind, n) in result.errors {
            *errors.entry(kind).or_insert(0) += n;
        }
    }
    let send_secs = load_started.elapsed().as_secs_f64();

    // Wait for every expected delivery, or the deadline.
    let expected = accepted.len() as u64 * endpoints as u64;
    let deadline = Instant::now() + Duration::from_secs(args.deadline);
    let deadline_reached = loop {
        if receiver.distinct() as u64 >= expected && receiver.delivered_of(&accepted).0 >= expected
        {
            break false;
        }
        if Instant::now() >= deadline {
            break true;
        }
        tokio::time::sleep(receiver::POLL).await;
    };

    let (delivered, unexpected) = receiver.delivered_of(&accepted);
    let recorded = receiver.recorded.lock().expect("receiver lock");
    let delivery_secs =
        recorded.last_arrival_us.saturating_sub(load_started_us) as f64 / 1_000_000.0;
    let report = Report {
        server_url: load.api.base.clone(),
        scenario: args.scenario.name().to_owned(),
        endpoints,
        concurrency: args.concurrency,
        verify_signatures: verify,
        send_secs: round3(send_secs),
        messages_sent: sent,
        messages_accepted: accepted.len() as u64,
        api_errors: errors.values().sum(),
        api_error_kinds: errors,
        accept_throughput_per_sec: rate(accepted.len() as u64, send_secs),
        api_latency: Percentiles::from_micros(&api_latency),
        deliveries_expected: expected,
        deliveries_received: delivered,
        delivery_secs: round3(delivery_secs),
        deliveries_per_sec: rate(delivered, delivery_secs),
        end_to_end_latency: Percentiles::from_micros(&recorded.end_to_end),
        duplicates: recorded.duplicates,
        missing_deliveries: expected.saturating_sub(delivered),
        unexpected_deliveries: unexpected + recorded.unreadable,
        signature_failures: recorded.signature_failures,
        deadline_reached,
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
