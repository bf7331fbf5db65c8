//! The production topology exactly as docker-compose runs it, with real
//! processes of the real binary: an API process on PostgreSQL, RabbitMQ and
//! Redis (`HERALD_ROLES=api`, handing new deliveries straight to RabbitMQ),
//! two worker processes and a stats process, each serving `/metrics` and
//! `/health` on a `HERALD_METRICS_ADDR` of its own. Each test has its own
//! database, RabbitMQ prefix and Redis prefix, so they run in parallel.
//!
//! - Messages posted to the API arrive signed, are counted by the stats
//!   role, and every `herald_*` series the Grafana dashboard and the
//!   Prometheus alerts read is exported by some role; `herald healthcheck`
//!   passes against running roles and fails against stopped ones.
//! - Every role stops cleanly on SIGTERM (exit 0) while work is in flight and
//!   posts keep coming, and nothing accepted is lost or counted twice.
//! - A worker stuck on an endpoint exits with status 1 once
//!   `HERALD_SHUTDOWN_TIMEOUT` has passed, and another worker delivers what it
//!   had in flight.
//!
//! The dashboard and the alerts are read from `deploy/` at the workspace root;
//! `HERALD_E2E_DEPLOY_DIR` names another directory with the same layout
//! (`grafana/dashboards/herald.json`, `prometheus/alerts.yml`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::topology::{
    count_by_message, create_app, post_messages, unfinished, Topology, TopologyOptions,
};
use herald_e2e::{healthcheck, Herald};
use serde_json::{json, Value};

/// `HERALD_SHUTDOWN_TIMEOUT` of every process in the first two tests: above
/// the delivery timeout, as docs/configuration.md advises.
const SHUTDOWN_TIMEOUT: u64 = 15;

/// How much longer than its shutdown timeout a process may take to be gone
/// (it is only a bound on the wait: a process past its timeout exits 1).
const EXIT_MARGIN: Duration = Duration::from_secs(10);

/// What a process logs when its shutdown timeout cut it short.
const TIMEOUT_LINE: &str = "shutdown did not finish within HERALD_SHUTDOWN_TIMEOUT";

/// The compose topology: the API, workers 1 and 2, and the stats process 3.
struct Stack {
    topology: Topology,
    workers: [usize; 2],
    stats: usize,
}

impl Stack {
    /// Starts the API (on RabbitMQ and Redis), two workers and a stats
    /// process, every one with `HERALD_SHUTDOWN_TIMEOUT`, the workers and
    /// stats also with `worker_env`; `None` when a service is missing and
    /// optional.
    async fn start(worker_env: &[(&str, &str)]) -> Option<Self> {
        let timeout = (
            "HERALD_SHUTDOWN_TIMEOUT".to_owned(),
            SHUTDOWN_TIMEOUT.to_string(),
        );
        let mut env = vec![timeout.clone()];
        env.extend(
            worker_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let topology = Topology::start(TopologyOptions {
            api_env: vec![timeout],
            worker_env: env,
            ..TopologyOptions::compose()
        })
        .await?;
        let second = topology.start_worker().await;
        let stats = topology.start_stats().await;
        Some(Self {
            topology,
            workers: [1, second],
            stats,
        })
    }
}

fn header<'a>(request: &'a herald_e2e::receiver::Received, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ metrics

/// One scrape: its text, its sample names and its `# TYPE`s.
struct Scrape {
    text: String,
    names: BTreeSet<String>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The sum of every sample of `name` (any labels) whose labels contain `filter`.
    fn sum(&self, name: &str, filter: &str) -> f64 {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter(|line| line.contains(filter))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn scrape(http: &reqwest::Client, address: &str) -> Scrape {
    let url = format!("http://{address}/metrics");
    let response = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape {url}: {e}"));
    assert_eq!(response.status(), 200, "scrape {url}");
    let text = response.text().await.expect("scrape body");
    let mut names = BTreeSet::new();
    let mut types = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if let (Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next())
            {
                types.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..end].to_owned());
    }
    Scrape { text, names, types }
}

/// Scrapes `address` until `done` holds (at most `limit`); the last scrape.
async fn scrape_until(
    http: &reqwest::Client,
    address: &str,
    limit: Duration,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + limit;
    loop {
        let current = scrape(http, address).await;
        if done(&current) || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------- dashboard and alert rules

fn deploy_dir() -> PathBuf {
    match std::env::var_os("HERALD_E2E_DEPLOY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy"),
    }
}

fn read_deploy_file(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); set HERALD_E2E_DEPLOY_DIR to read deploy files from elsewhere",
            path.display()
        )
    })
}

/// The `herald_*` metric names a PromQL expression reads: identifiers outside
/// quoted strings (label values) that start with `herald_`.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut quote: Option<char> = None;
    let mut word = String::new();
    let mut escaped = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if word.starts_with("herald_") {
            names.insert(word.clone());
        }
        word.clear();
        if matches!(c, '"' | '\'' | '`') {
            quote = Some(c);
        }
    }
    names
}

/// Every `expr` string anywhere in a Grafana dashboard (panels' targets,
/// panels nested in rows), and the templating variables' queries.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    ("templating", templating) => {
                        for variable in templating["list"].as_array().into_iter().flatten() {
                            match &variable["query"] {
                                Value::String(query) => out.push(query.clone()),
                                Value::Object(query) => {
                                    if let Some(Value::String(q)) = query.get("query") {
                                        out.push(q.clone());
                                    }
                                }
                                _ => {}
                            }
                        }
                        dashboard_exprs(templating, out);
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dashboard_exprs(item, out)),
        _ => {}
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The values of the `expr:` and `record:` keys of a Prometheus rules file
/// (plain, quoted or block scalars, continued on more indented lines).
fn rule_values(yaml: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut values = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let item = line.trim_start();
        let item = item.strip_prefix("- ").unwrap_or(item).trim_start();
        let Some(value) = item
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            i += 1;
            continue;
        };
        // The key's column (after a list item's "- ").
        let indent = line.len() - item.len();
        let first = value.trim();
        let mut text = if first.starts_with(['|', '>']) {
            String::new()
        } else {
            first.to_owned()
        };
        i += 1;
        while i < lines.len() && (lines[i].trim().is_empty() || indentation(lines[i]) > indent) {
            text.push('\n');
            text.push_str(lines[i].trim());
            i += 1;
        }
        let text = text.trim();
        let text = if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            inner.replace("\\\"", "\"").replace("\\\\", "\\")
        } else if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            inner.replace("''", "'")
        } else {
            text.to_owned()
        };
        values.push(text);
    }
    values
}

/// The `herald_*` names of `referenced` that no scrape exports: neither a
/// sample nor a typed family, nor the `_bucket`/`_sum`/`_count` series of an
/// exported histogram.
fn not_exported(referenced: &BTreeSet<String>, scrapes: &[&Scrape]) -> Vec<String> {
    let exported = |name: &str| {
        scrapes.iter().any(|s| {
            s.names.contains(name)
                || s.types.contains_key(name)
                || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    name.strip_suffix(suffix).is_some_and(|base| {
                        s.types.get(base).map(String::as_str) == Some("histogram")
                    })
                })
        })
    };
    referenced
        .iter()
        .filter(|name| !exported(name))
        .cloned()
        .collect()
}

#[test]
fn the_rule_and_promql_readers_find_the_metric_names() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - record: herald_x:rate5m\n        expr: sum(rate(herald_a_total[5m]))\n      - alert: A\n        expr: |\n          herald_b{job=\"herald_not_a_metric\"}\n            / herald_c > 1\n        annotations:\n          summary: \"herald_d is not read\"\n      - alert: B\n        expr: \"herald_e{q=\\\"x\\\"} > 0\"\n      - alert: C\n        expr: >-\n          herald_f\n";
    let exprs = rule_values(yaml, "expr");
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| promql_metric_names(e)).collect();
    let expected: BTreeSet<String> = [
        "herald_a_total",
        "herald_b",
        "herald_c",
        "herald_e",
        "herald_f",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected, "{exprs:?}");
    assert_eq!(rule_values(yaml, "record"), ["herald_x:rate5m"]);

    let dashboard = json!({"panels": [
        {"targets": [{"expr": "rate(herald_g_bucket[5m])"}]},
        {"type": "row", "panels": [{"targets": [{"expr": "herald_h"}]}]}
    ], "templating": {"list": [{"query": {"query": "label_values(herald_i, route)"}}]}});
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| promql_metric_names(e)).collect();
    assert_eq!(
        names,
        ["herald_g_bucket", "herald_h", "herald_i"]
            .map(String::from)
            .into()
    );

    let scrape = Scrape {
        text: String::new(),
        names: ["herald_g_bucket", "herald_g_count", "herald_h"]
            .map(String::from)
            .into(),
        types: [("herald_g".to_owned(), "histogram".to_owned())].into(),
    };
    let referenced: BTreeSet<String> = [
        "herald_g_sum",
        "herald_g",
        "herald_h",
        "herald_h_sum",
        "herald_i",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        not_exported(&referenced, &[&scrape]),
        ["herald_h_sum", "herald_i"]
    );
}

// ---------------------------------------------------------------- the tests

/// The compose topology delivers signed messages, the stats role counts
/// them, every role's metrics cover what the dashboard and the alerts read,
/// and `herald healthcheck` tells running roles from stopped ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_topology_delivers_counts_and_exports_what_the_dashboard_reads() {
    const MESSAGES: usize = 100;
    let Some(stack) = Stack::start(&[]).await else {
        return;
    };
    let topology = &stack.topology;
    let api = &topology.api;
    let [w1, w2] = stack.workers;
    let processes = [
        ("worker", topology.metrics_addr(w1)),
        ("worker", topology.metrics_addr(w2)),
        ("stats", topology.metrics_addr(stack.stats)),
    ];

    // Every role is healthy, by the healthcheck of its own configuration.
    let api_addr = api.address().to_owned();
    let unspecified = api_addr.replace("127.0.0.1", "0.0.0.0");
    for listen in [&api_addr, &unspecified] {
        let (status, output) = healthcheck(
            &[("HERALD_ROLES", "api"), ("HERALD_LISTEN_ADDR", listen)],
            &[],
        )
        .await;
        assert!(
            status.success(),
            "api healthcheck ({listen}): {status}: {output}"
        );
        assert!(output.contains("/api/v1/health"), "{output}");
    }
    for (roles, address) in &processes {
        let (status, output) = healthcheck(
            &[
                ("HERALD_ROLES", roles),
                ("HERALD_METRICS_ADDR", address.as_str()),
            ],
            &[],
        )
        .await;
        assert!(
            status.success(),
            "{roles} healthcheck ({address}): {status}: {output}"
        );
        assert!(
            output.contains(&format!("http://{address}/health")),
            "{output}"
        );
    }
    let url = format!("http://{}/health", processes[1].1);
    let (status, output) = healthcheck(&[], &["--url", &url]).await;
    assert!(status.success(), "healthcheck --url {url}: {output}");
    // A worker without a metrics listener serves nothing to check.
    let (status, output) = healthcheck(&[("HERALD_ROLES", "worker")], &[]).await;
    assert!(!status.success(), "nothing to check, yet healthy: {output}");

    // Messages arrive signed, every delivery succeeded.
    let receiver = Receiver::start().await;
    create_app(api, "a", &[receiver.url("ok")]).await;
    let endpoint_id = api.get("/api/v1/app/a/endpoint").await.body["data"][0]["id"]
        .as_str()
        .expect("the endpoint's id")
        .to_owned();
    let secret = api
        .get(&format!("/api/v1/app/a/endpoint/{endpoint_id}/secret"))
        .await
        .body["key"]
        .as_str()
        .expect("the endpoint's secret")
        .to_owned();
    let ids: HashSet<String> = post_messages(
        api.url.clone(),
        api.tenant.key.clone(),
        "a".to_owned(),
        MESSAGES,
        8,
        Arc::new(AtomicUsize::new(0)),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), MESSAGES);
    let (_, states) = topology
        .wait_for_every_message(&receiver, "ok", &ids, Duration::from_secs(90))
        .await;
    assert_eq!(
        states.get("succeeded").copied(),
        Some(MESSAGES as i64),
        "{states:?}"
    );
    let key = herald_signature::parse_secret(&secret).expect("a valid secret");
    let received = receiver.received("ok");
    for request in &received {
        let headers = herald_signature::standard::WebhookHeaders {
            id: header(request, "webhook-id"),
            timestamp: header(request, "webhook-timestamp"),
            signature: header(request, "webhook-signature"),
        };
        assert!(
            !headers.timestamp.is_empty() && headers.signature.starts_with("v1,"),
            "signature headers: {:?}",
            request.headers
        );
        herald_signature::standard::verify(&key, &headers, &request.body, Duration::from_secs(300))
            .unwrap_or_else(|e| {
                panic!(
                    "{} is not signed with the endpoint's secret: {e}",
                    headers.id
                )
            });
    }
    let mut db = topology.db().await;
    let (attempts, successes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) FROM message_attempt",
    )
    .fetch_one(&mut db)
    .await
    .expect("count attempts");
    assert_eq!(attempts, successes, "every attempt succeeded");
    assert_eq!(
        attempts,
        received.len() as i64,
        "one attempt per request received"
    );

    // The stats role counted every attempt as a success.
    let report_path = format!("/api/v1/app/a/endpoint/{endpoint_id}/stats/report");
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let reply = api.get(&report_path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if reply.body["attempts"].as_i64() >= Some(attempts) || Instant::now() > deadline {
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        report["attempts"],
        json!(attempts),
        "{report}\n{}",
        topology.logs()
    );
    assert_eq!(report["successes"], json!(successes), "{report}");
    assert_eq!(report["failures"], json!(0), "{report}");

    // Each role exports its series: the API what it accepted (and it handed
    // every delivery to RabbitMQ itself, so the relays handed out only what a
    // failed hand-off left them), the workers every attempt, the stats
    // process every event.
    let http = &api.http;
    let api_scrape = scrape(http, &api_addr).await;
    assert_eq!(
        api_scrape.sum("herald_messages_accepted_total", ""),
        MESSAGES as f64,
        "{}",
        api_scrape.text
    );
    let mut worker_scrapes = Vec::new();
    for w in [w1, w2] {
        worker_scrapes.push(scrape(http, &topology.metrics_addr(w)).await);
    }
    let worker_attempts: f64 = worker_scrapes
        .iter()
        .map(|s| s.sum("herald_delivery_attempts_total", ""))
        .sum();
    assert_eq!(
        worker_attempts, attempts as f64,
        "attempts by the two workers"
    );
    let relayed: f64 = worker_scrapes
        .iter()
        .map(|s| s.sum("herald_deliveries_relayed_total", ""))
        .sum();
    let failed_handoffs = api
        .log()
        .matches("could not queue the deliveries; the relay will")
        .count();
    assert!(
        relayed <= failed_handoffs as f64,
        "the relays handed out {relayed} deliveries, the API failed to hand off {failed_handoffs}"
    );
    let stats_scrape = scrape_until(
        http,
        &topology.metrics_addr(stack.stats),
        Duration::from_secs(30),
        |s| {
            s.sum("herald_stats_events_total", "") - s.sum("herald_stats_duplicates_total", "")
                >= attempts as f64
                && s.names.contains("herald_queue_depth")
        },
    )
    .await;
    assert_eq!(
        stats_scrape.sum("herald_stats_events_total", "")
            - stats_scrape.sum("herald_stats_duplicates_total", ""),
        attempts as f64,
        "{}",
        stats_scrape.text
    );
    // Queue depths are published every 5 s by workers and stats alike.
    let worker_scrapes = {
        let mut again = Vec::new();
        for w in [w1, w2] {
            again.push(
                scrape_until(
                    http,
                    &topology.metrics_addr(w),
                    Duration::from_secs(30),
                    |s| s.names.contains("herald_queue_depth"),
                )
                .await,
            );
        }
        again
    };

    // Everything the dashboard and the alerts read is exported by some role.
    let scrapes: Vec<&Scrape> = std::iter::once(&api_scrape)
        .chain(&worker_scrapes)
        .chain(std::iter::once(&stats_scrape))
        .collect();
    let dashboard: Value =
        serde_json::from_str(&read_deploy_file("grafana/dashboards/herald.json"))
            .expect("the dashboard is JSON");
    let alerts = read_deploy_file("prometheus/alerts.yml");
    let recorded: BTreeSet<String> = rule_values(&alerts, "record").into_iter().collect();
    let mut dashboard_queries = Vec::new();
    dashboard_exprs(&dashboard, &mut dashboard_queries);
    for (file, exprs) in [
        ("grafana/dashboards/herald.json", dashboard_queries),
        ("prometheus/alerts.yml", rule_values(&alerts, "expr")),
    ] {
        let referenced: BTreeSet<String> = exprs
            .iter()
            .flat_map(|e| promql_metric_names(e))
            .filter(|name| !recorded.contains(name))
            .collect();
        assert!(
            !referenced.is_empty(),
            "{file} reads no herald_* series (expressions: {exprs:?})"
        );
        let missing = not_exported(&referenced, &scrapes);
        assert!(
            missing.is_empty(),
            "{file} reads series no role exports: {missing:?} (it reads {referenced:?})"
        );
    }

    // Stopped roles fail their healthcheck; they stop with status 0.
    topology.terminate(w2);
    let status = topology
        .wait_for_exit(w2, Duration::from_secs(SHUTDOWN_TIMEOUT) + EXIT_MARGIN)
        .await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "worker {w2}: {status:?}\n{}",
        topology.logs()
    );
    let (status, output) = healthcheck(
        &[
            ("HERALD_ROLES", "worker"),
            ("HERALD_METRICS_ADDR", &processes[1].1),
        ],
        &[],
    )
    .await;
    assert!(!status.success(), "a stopped worker is healthy: {output}");
    let mut api = stack.topology.api;
    api.terminate();
    let status = api
        .wait_for_exit(Duration::from_secs(SHUTDOWN_TIMEOUT) + EXIT_MARGIN)
        .await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "api: {status:?}\n{}",
        api.log()
    );
    let (status, output) = healthcheck(
        &[("HERALD_ROLES", "api"), ("HERALD_LISTEN_ADDR", &api_addr)],
        &[],
    )
    .await;
    assert!(!status.success(), "a stopped API is healthy: {output}");
}

/// What one post to the API got.
#[derive(Debug)]
enum Post {
    /// 202: accepted, so it must be delivered.
    Accepted(String),
    /// Any other answer.
    Answered(u16),
    /// No answer: refused or cut connection, timeout.
    Failed(String),
}

/// Posts a message to `app` every `interval` (each post on its own, so a slow
/// answer does not slow the pace) until `stop` is set, at most `limit` posts;
/// counts the accepted ones in `accepted` as they go, and returns what each
/// post got.
async fn post_steadily(
    base_url: String,
    key: String,
    app: &str,
    interval: Duration,
    limit: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> Vec<Post> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let url = format!("{base_url}/api/v1/app/{app}/msg");
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..limit {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let request = http
            .post(&url)
            .bearer_auth(&key)
            .json(&json!({"eventType": "steady", "payload": {"n": n}}));
        let accepted = accepted.clone();
        posts.spawn(async move {
            match request.send().await {
                Ok(response) => {
                    let reply = Herald::reply(response).await;
                    match (reply.status.as_u16(), reply.body["id"].as_str()) {
                        (202, Some(id)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            Post::Accepted(id.to_owned())
                        }
                        (status, _) => Post::Answered(status),
                    }
                }
                Err(e) => Post::Failed(e.to_string()),
            }
        });
        tokio::time::sleep(interval).await;
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = posts.join_next().await {
        outcomes.push(outcome.expect("a post task"));
    }
    outcomes
}

/// Waits (at most 30 s) until worker `number` has an attempt in flight, by
/// its `herald_worker_in_flight` gauge.
async fn wait_until_busy(topology: &Topology, http: &reqwest::Client, number: usize) {
    let busy = scrape_until(
        http,
        &topology.metrics_addr(number),
        Duration::from_secs(30),
        |s| s.sum("herald_worker_in_flight", "") >= 1.0,
    )
    .await;
    assert!(
        busy.sum("herald_worker_in_flight", "") >= 1.0,
        "worker {number} never had an attempt in flight:\n{}\n{}",
        busy.text,
        topology.logs()
    );
}

/// Requests received per message id, and attempts recorded per message id.
async fn requests_and_attempts(
    topology: &Topology,
    receiver: &Receiver,
    path: &str,
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let requests = count_by_message(&receiver.received(path));
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT msg_id, count(*) FROM message_attempt GROUP BY msg_id")
            .fetch_all(&mut topology.db().await)
            .await
            .expect("count attempts by message");
    let attempts = rows.into_iter().map(|(id, n)| (id, n as usize)).collect();
    (requests, attempts)
}

/// Every role gets SIGTERM in turn while a slow endpoint keeps attempts in
/// flight and posts keep coming: each exits 0 within its shutdown timeout,
/// and once a fresh worker and stats process run, every accepted message has
/// arrived, every request an endpoint got is a recorded attempt (none was
/// abandoned in flight), and the stats count each recorded attempt once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_stops_cleanly_on_sigterm_with_nothing_lost() {
    const PATH: &str = "slow";
    // Four attempts at a time per worker at a second each, fewer than the
    // 20 posts a second: a backlog builds up, so the stopping workers leave
    // tasks they had not started, which RabbitMQ must hand to the next one.
    let Some(stack) = Stack::start(&[("HERALD_ENDPOINT_CONCURRENCY", "4")]).await else {
        return;
    };
    let mut topology = stack.topology;
    let [w1, w2] = stack.workers;
    let receiver = Receiver::start().await;
    receiver.delay(PATH, Duration::from_secs(1));
    create_app(&topology.api, "a", &[receiver.url(PATH)]).await;
    let http = topology.api.http.clone();
    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT) + EXIT_MARGIN;
    let stopped_cleanly = |name: &str, status: Option<std::process::ExitStatus>, log: &str| {
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{name} did not exit 0 within {limit:?} of SIGTERM: {status:?}; log:\n{log}"
        );
        assert!(
            !log.contains(TIMEOUT_LINE),
            "{name} hit its shutdown timeout:\n{log}"
        );
    };

    let stop_posting = Arc::new(AtomicBool::new(false));
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let posting = tokio::spawn({
        let (url, key, stop, accepted) = (
            topology.api.url.clone(),
            topology.api.tenant.key.clone(),
            stop_posting.clone(),
            accepted_so_far.clone(),
        );
        async move {
            post_steadily(
                url,
                key,
                "a",
                Duration::from_millis(50),
                1200,
                stop,
                accepted,
            )
            .await
        }
    });

    // Worker 1, while it has attempts in flight: they finish and are recorded.
    wait_until_busy(&topology, &http, w1).await;
    let sigterm_w1 = Instant::now();
    topology.terminate(w1);
    let status = topology.wait_for_exit(w1, limit).await;
    let w1_took = sigterm_w1.elapsed();
    stopped_cleanly("worker 1", status, &topology.worker_log(w1));
    assert!(topology.worker_log(w1).contains("worker stopped"));
    // The stats process, then the API while posts keep coming.
    topology.terminate(stack.stats);
    let status = topology.wait_for_exit(stack.stats, limit).await;
    let stats_log = topology.worker_log(stack.stats);
    stopped_cleanly("the stats process", status, &stats_log);
    assert!(
        stats_log.contains("stats aggregator stopped"),
        "{stats_log}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted_so_far.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api_addr = topology.api.address().to_owned();
    let sigterm_api = Instant::now();
    topology.api.terminate();
    let status = topology.api.wait_for_exit(limit).await;
    let api_took = sigterm_api.elapsed();
    stopped_cleanly("the API", status, &topology.api.log());
    assert!(topology.api.log().contains("api stopped"));
    // A few more posts meet the stopped API.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_posting.store(true, Ordering::SeqCst);
    let posts = posting.await.expect("the posting task");
    let (status, output) = healthcheck(
        &[("HERALD_ROLES", "api"), ("HERALD_LISTEN_ADDR", &api_addr)],
        &[],
    )
    .await;
    assert!(!status.success(), "a stopped API is healthy: {output}");

    // Worker 2, with the backlog the posts left it.
    wait_until_busy(&topology, &http, w2).await;
    let sigterm_w2 = Instant::now();
    topology.terminate(w2);
    let status = topology.wait_for_exit(w2, limit).await;
    let w2_took = sigterm_w2.elapsed();
    stopped_cleanly("worker 2", status, &topology.worker_log(w2));

    let accepted: HashSet<String> = posts
        .iter()
        .filter_map(|p| match p {
            Post::Accepted(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let refused: Vec<&Post> = posts
        .iter()
        .filter(|p| !matches!(p, Post::Accepted(_)))
        .collect();
    assert!(accepted.len() >= 40, "too few posts accepted: {posts:?}");
    assert!(!refused.is_empty(), "no post met the stopped API");
    assert!(
        refused
            .iter()
            .all(|p| !matches!(p, Post::Answered(s) if (400..500).contains(s))),
        "a post was refused as invalid: {refused:?}"
    );

    // Fresh processes deliver what was left; nothing accepted is lost.
    receiver.delay(PATH, Duration::from_millis(100));
    let restarted = Instant::now();
    topology.api.restart().await;
    topology.start_worker().await;
    topology.start_stats().await;
    let (_, states) = topology
        .wait_for_every_message(&receiver, PATH, &accepted, Duration::from_secs(90))
        .await;
    let left_over = receiver
        .received(PATH)
        .iter()
        .filter(|r| r.at > restarted)
        .count();
    assert!(
        left_over > 0,
        "the stopped workers left no backlog to redeliver (posted faster than delivered?)"
    );
    assert_eq!(unfinished(&states), 0);
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["succeeded"],
        "every delivery succeeded: {states:?}"
    );
    // No attempt was abandoned in flight (worker 1 had some when it got its
    // SIGTERM, worker 2 too): every request the endpoint got is a recorded
    // attempt, and every recorded attempt reached it. An attempt cut off by
    // an exit would be a request without an attempt, made again later.
    let (requests, attempts) = requests_and_attempts(&topology, &receiver, PATH).await;
    let differ: Vec<_> = requests
        .iter()
        .filter(|(id, n)| attempts.get(*id) != Some(n))
        .map(|(id, n)| (id.clone(), *n, attempts.get(id).copied()))
        .chain(
            attempts
                .iter()
                .filter(|(id, _)| !requests.contains_key(*id))
                .map(|(id, n)| (id.clone(), 0, Some(*n))),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "(message, requests received, attempts recorded) that differ: {differ:?}; logs:\n{}",
        topology.logs()
    );
    let recorded: i64 = attempts.values().map(|n| *n as i64).sum();
    let successes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_attempt WHERE status_code BETWEEN 200 AND 299",
    )
    .fetch_one(&mut topology.db().await)
    .await
    .expect("count successful attempts");
    assert_eq!(successes, recorded, "every attempt succeeded");

    // The stats count every recorded attempt once: none lost with a stopped
    // process, none counted twice after a redelivery.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let reply = topology.api.get("/api/v1/app/a/stats/report").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if reply.body["attempts"].as_i64() >= Some(recorded) || Instant::now() > deadline {
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        report["attempts"],
        json!(recorded),
        "{report}\n{}",
        topology.logs()
    );
    assert_eq!(report["successes"], json!(successes), "{report}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = topology.api.get("/api/v1/app/a/stats/report").await.body;
    assert_eq!(
        again["attempts"],
        json!(recorded),
        "counted twice later: {again}"
    );
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM stats_seen")
        .fetch_one(&mut topology.db().await)
        .await
        .expect("count the counted attempt ids");
    assert_eq!(seen, recorded, "one counted id per recorded attempt");

    let failures: BTreeSet<String> = refused
        .iter()
        .map(|p| match p {
            Post::Failed(error) => error.clone(),
            Post::Answered(status) => format!("answered {status}"),
            Post::Accepted(_) => unreachable!(),
        })
        .collect();
    eprintln!(
        "SIGTERM to exit: worker 1 {w1_took:?}, API {api_took:?}, worker 2 {w2_took:?}; \
         {} posts accepted, {} not ({failures:?}); {recorded} attempts, {left_over} after the restart",
        accepted.len(),
        refused.len()
    );
}

/// A worker whose only attempt hangs on an endpoint exits with status 1 once
/// `HERALD_SHUTDOWN_TIMEOUT` has passed, saying so; the task it held goes
/// back to RabbitMQ, and another worker delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_attempt_cannot_hold_a_worker_past_its_shutdown_timeout() {
    const GRACE: u64 = 2;
    const PATH: &str = "stuck";
    let Some(topology) = Topology::start(TopologyOptions {
        delivery_timeout: 15,
        delivery_lease: 20,
        worker_env: vec![("HERALD_SHUTDOWN_TIMEOUT".into(), GRACE.to_string())],
        ..TopologyOptions::compose()
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    // Longer than the delivery timeout and than this test waits.
    receiver.delay(PATH, Duration::from_secs(120));
    create_app(&topology.api, "a", &[receiver.url(PATH)]).await;
    let created = topology
        .api
        .post(
            "/api/v1/app/a/msg",
            json!({"eventType": "t", "payload": {}}),
        )
        .await;
    assert_eq!(created.status, 202, "{created:?}");
    let msg_id = created.body["id"].as_str().expect("message id").to_owned();
    let arrived = receiver.wait_for(PATH, 1, Duration::from_secs(30)).await;
    assert_eq!(
        arrived.len(),
        1,
        "the attempt never started; logs:\n{}",
        topology.logs()
    );

    let sigterm = Instant::now();
    topology.terminate(1);
    let status = topology
        .wait_for_exit(1, Duration::from_secs(GRACE) + EXIT_MARGIN)
        .await;
    let took = sigterm.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the stuck worker did not exit 1 within {:?} of SIGTERM: {status:?}; logs:\n{}",
        Duration::from_secs(GRACE) + EXIT_MARGIN,
        topology.logs()
    );
    assert!(
        took >= Duration::from_secs(GRACE) - Duration::from_millis(100),
        "exited after {took:?}, before its shutdown timeout"
    );
    assert!(
        topology.worker_log(1).contains(TIMEOUT_LINE),
        "no timeout line; log:\n{}",
        topology.worker_log(1)
    );
    // The cut attempt was not recorded; the delivery is still in flight.
    let (state, attempts) = topology.delivery(&msg_id).await;
    assert_eq!((state.as_str(), attempts), ("sending", 0));

    // The endpoint recovers; a fresh worker delivers the message.
    receiver.delay(PATH, Duration::ZERO);
    topology.start_worker().await;
    assert_eq!(
        topology
            .wait_for_delivery(&msg_id, "succeeded", Duration::from_secs(60))
            .await,
        ("succeeded".to_owned(), 1),
        "logs:\n{}",
        topology.logs()
    );
    let requests = receiver.received(PATH);
    assert!(
        requests.len() >= 2 && requests.iter().all(|r| header(r, "webhook-id") == msg_id),
        "the message was attempted again: {} requests",
        requests.len()
    );
    let statuses: Vec<i32> =
        sqlx::query_scalar("SELECT status_code FROM message_attempt WHERE msg_id = $1")
            .bind(&msg_id)
            .fetch_all(&mut topology.db().await)
            .await
            .expect("read attempts");
    assert_eq!(statuses, [200], "only the finished attempt is recorded");
    eprintln!("stuck worker: exited 1 after {took:?}");
}
