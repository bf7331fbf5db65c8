//! Prometheus metrics end to end: `/metrics` parses as the text exposition
//! format, its series move by exactly what the server did (messages accepted,
//! attempts by outcome, retries, dead letters, requests by route template),
//! no label ever carries an id, `HERALD_METRICS_TOKEN` gates the scrape, and a
//! worker-only process serves its delivery series on `HERALD_METRICS_ADDR`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{herald_bin, Herald, Options};
use reqwest::StatusCode;
use serde_json::json;

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    /// Metric family → its `# TYPE`.
    types: HashMap<String, String>,
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c)) && chars.all(ok_rest)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses one sample line of the text format (0.0.4).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if !is_name(&key, false) {
                return Err(format!("bad label name {key:?} in {line:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("unquoted label value in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated label value in {line:?}")),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    end = Some(i + 1);
                    break;
                }
                other => return Err(format!("expected , or }} not {other:?} in {line:?}")),
            }
        }
        rest = &after[end.ok_or_else(|| format!("unterminated labels in {line:?}"))?..];
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(
        fields
            .next()
            .ok_or_else(|| format!("no value in {line:?}"))?,
    )?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp in {line:?}"))?;
    }
    if fields.next().is_some() {
        return Err(format!("trailing text in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse(text: &str) -> Result<Scrape, String> {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                let name = words.next().ok_or("TYPE without a name")?;
                let kind = words.next().ok_or("TYPE without a type")?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("unknown type {kind} of {name}"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(format!("{name} typed twice"));
                }
            }
            continue;
        }
        samples.push(parse_sample(line)?);
    }
    // Every sample belongs to a typed family (histograms add suffixes).
    for sample in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&sample.name);
        if !types.contains_key(family) {
            return Err(format!("{} has no # TYPE", sample.name));
        }
    }
    Ok(Scrape {
        text: text.to_owned(),
        samples,
        types,
    })
}

impl Scrape {
    /// The sum of `name`'s samples whose labels include every pair given.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    fn kind(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Every label value of every sample.
    fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.values().map(String::as_str))
    }
}

async fn scrape(http: &reqwest::Client, base_url: &str, token: Option<&str>) -> Scrape {
    let mut request = http.get(format!("{base_url}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape reaches herald");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "scrape {base_url}/metrics"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    let text = response.text().await.expect("scrape body");
    parse(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// Scrapes until `done` holds (at most 30 s) and returns the last scrape.
async fn scrape_until(
    http: &reqwest::Client,
    base_url: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = scrape(http, base_url, None).await;
        if done(&current) || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ACCEPTED: &str = "herald_messages_accepted_total";
const REQUESTS: &str = "herald_http_requests_total";
const REQUEST_SECONDS: &str = "herald_http_request_duration_seconds";
const ATTEMPTS: &str = "herald_delivery_attempts_total";
const ATTEMPT_SECONDS: &str = "herald_delivery_duration_seconds";
const RETRIES: &str = "herald_retries_scheduled_total";
const DEAD: &str = "herald_dead_letters_total";
const RELAYED: &str = "herald_deliveries_relayed_total";
const BATCH: &str = "herald_relay_batch_size";
const IN_FLIGHT: &str = "herald_worker_in_flight";
const MSG_ROUTE: &str = "/api/v1/app/{app_id}/msg";

/// The delivery series a worker exports, and their types (the histogram
/// appears with its first observation).
fn assert_delivery_series(scrape: &Scrape) {
    for (family, kind) in [
        (ATTEMPTS, "counter"),
        (RETRIES, "counter"),
        (DEAD, "counter"),
        (RELAYED, "counter"),
        (BATCH, "gauge"),
        (IN_FLIGHT, "gauge"),
    ] {
        assert_eq!(
            scrape.kind(family),
            Some(kind),
            "{family}:\n{}",
            scrape.text
        );
    }
    if scrape.has(&format!("{ATTEMPT_SECONDS}_count")) {
        assert_eq!(scrape.kind(ATTEMPT_SECONDS), Some("histogram"));
    }
    // A histogram's +Inf bucket counts every observation.
    assert_eq!(
        scrape.sum(&format!("{ATTEMPT_SECONDS}_bucket"), &[("le", "+Inf")]),
        scrape.sum(&format!("{ATTEMPT_SECONDS}_count"), &[])
    );
}

/// Creates application `uid` with one endpoint at `url`; returns their ids.
async fn app_with_endpoint(herald: &Herald, uid: &str, url: &str) -> (String, String) {
    let app = herald
        .post("/api/v1/app", json!({"name": uid, "uid": uid}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    let endpoint = herald
        .post(&format!("/api/v1/app/{uid}/endpoint"), json!({"url": url}))
        .await;
    assert_eq!(endpoint.status, 201, "{endpoint:?}");
    (
        app.body["id"].as_str().unwrap().to_owned(),
        endpoint.body["id"].as_str().unwrap().to_owned(),
    )
}

/// Posts `count` messages to application `uid`; returns their ids.
async fn post_messages(herald: &Herald, uid: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let reply = herald
            .post(
                &format!("/api/v1/app/{uid}/msg"),
                json!({"eventType": "invoice.paid", "payload": {"n": i}}),
            )
            .await;
        assert_eq!(reply.status, 202, "{reply:?}");
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// A `herald serve` with only the worker role, started by hand (the harness
/// always starts the API); killed when dropped.
struct WorkerProcess {
    child: Child,
    metrics_url: String,
    log_path: std::path::PathBuf,
}

impl WorkerProcess {
    fn start(database_url: &str) -> Self {
        // A free port: bound, then released for the worker to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log_path = std::env::temp_dir().join(format!(
            "herald-metrics-worker-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path).expect("create worker log file");
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_ROLES", "worker")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_DATABASE_MAX_CONNECTIONS", "5")
            .env("HERALD_METRICS_ADDR", &metrics_addr)
            .env("HERALD_SSRF_ALLOW", "127.0.0.0/8,::1")
            .env("HERALD_RETRY_SCHEDULE", "1,1")
            .env("HERALD_LOG", "warn,herald=info")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald serve (worker)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("herald: metrics on ") {
                    let _ = tx.send(());
                }
            }
        });
        let worker = Self {
            child,
            metrics_url: format!("http://{metrics_addr}"),
            log_path,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!(
                "the worker did not serve metrics within 60 s; its log:\n{}",
                worker.log()
            );
        }
        worker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

herald_e2e::e2e_tests! {
    async fn series_move_by_what_the_server_did_and_carry_no_ids() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        receiver.script("fail", &[500]);
        let (good_app, good_endpoint) =
            app_with_endpoint(&herald, "metrics-good-app", &receiver.url("ok")).await;
        let (bad_app, bad_endpoint) =
            app_with_endpoint(&herald, "metrics-bad-app", &receiver.url("fail")).await;

        let before = scrape(&herald.http, &herald.url, None).await;
        assert!(before.has(ACCEPTED), "{}", before.text);
        assert_delivery_series(&before);
        let delta = |after: &Scrape, name: &str, labels: &[(&str, &str)]| {
            after.sum(name, labels) - before.sum(name, labels)
        };

        // N succeed at once; M fail three times (retry schedule 1,1) and die.
        let (n, m) = (3usize, 2usize);
        let mut ids = post_messages(&herald, "metrics-good-app", n).await;
        ids.extend(post_messages(&herald, "metrics-bad-app", m).await);
        let example = herald
            .post(
                &format!("/api/v1/app/metrics-good-app/endpoint/{good_endpoint}/send-example"),
                json!({"eventType": "invoice.paid"}),
            )
            .await;
        assert_eq!(example.status, 200, "{example:?}");
        ids.push(example.body["id"].as_str().unwrap().to_owned());
        // A 404 from a route (its template is the label) and from the fallback.
        let missing = herald
            .post(
                "/api/v1/app/metrics-missing-app/msg",
                json!({"eventType": "invoice.paid", "payload": {}}),
            )
            .await;
        assert_eq!(missing.status, 404, "{missing:?}");
        let nowhere = herald.get("/no/such/path").await;
        assert_eq!(nowhere.status, 404, "{nowhere:?}");

        let (successes, failures) = ((n + 1) as f64, (3 * m) as f64);
        receiver.wait_for("ok", n + 1, Duration::from_secs(30)).await;
        receiver.wait_for("fail", 3 * m, Duration::from_secs(30)).await;
        let after = scrape_until(&herald.http, &herald.url, |s| {
            delta(s, ATTEMPTS, &[("outcome", "success")]) >= successes
                && delta(s, ATTEMPTS, &[("outcome", "5xx")]) >= failures
                && delta(s, DEAD, &[]) >= m as f64
        })
        .await;
        let context = format!("scrape:\n{}\nserver log:\n{}", after.text, herald.log());

        assert_eq!(delta(&after, ACCEPTED, &[]), (n + m + 1) as f64, "{context}");
        let posted = [("method", "POST"), ("route", MSG_ROUTE), ("status", "202")];
        assert_eq!(delta(&after, REQUESTS, &posted), (n + m) as f64, "{context}");
        let not_found = [("method", "POST"), ("route", MSG_ROUTE), ("status", "404")];
        assert_eq!(delta(&after, REQUESTS, &not_found), 1.0, "{context}");
        let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
        assert_eq!(delta(&after, REQUESTS, &unmatched), 1.0, "{context}");
        let timed = [("method", "POST"), ("route", MSG_ROUTE)];
        assert_eq!(
            delta(&after, &format!("{REQUEST_SECONDS}_count"), &timed),
            (n + m + 1) as f64,
            "{context}"
        );
        assert_eq!(after.kind(REQUESTS), Some("counter"));
        assert_eq!(after.kind(REQUEST_SECONDS), Some("histogram"));

        assert_eq!(delta(&after, ATTEMPTS, &[("outcome", "success")]), successes, "{context}");
        assert_eq!(delta(&after, ATTEMPTS, &[("outcome", "5xx")]), failures, "{context}");
        assert_eq!(delta(&after, ATTEMPTS, &[]), successes + failures, "{context}");
        assert_eq!(
            delta(&after, &format!("{ATTEMPT_SECONDS}_count"), &[]),
            successes + failures,
            "{context}"
        );
        assert_eq!(delta(&after, RETRIES, &[]), (2 * m) as f64, "{context}");
        assert_eq!(delta(&after, DEAD, &[]), m as f64, "{context}");
        // The API queues new deliveries itself and retries go through the
        // queue's delays: the relay hands out only the resend.
        assert_eq!(delta(&after, RELAYED, &[]), 1.0, "{context}");
        assert_eq!(after.sum(IN_FLIGHT, &[]), 0.0, "{context}");
        assert_eq!(after.kind(ATTEMPT_SECONDS), Some("histogram"), "{context}");
        assert_delivery_series(&after);

        // Consumer lag: one observation per attempt. Queue depths are gauges
        // by part. The stats role counted every attempt and reports its lag.
        assert_eq!(
            delta(&after, "herald_delivery_lag_seconds_count", &[]),
            successes + failures,
            "{context}"
        );
        let counted = scrape_until(&herald.http, &herald.url, |s| {
            delta(s, "herald_stats_events_total", &[]) >= successes + failures
                && s.has("herald_queue_depth")
        })
        .await;
        let context = format!("scrape:\n{}\nserver log:\n{}", counted.text, herald.log());
        assert_eq!(
            delta(&counted, "herald_stats_events_total", &[]),
            successes + failures,
            "{context}"
        );
        for part in ["ready", "delayed", "dead", "stats_events"] {
            assert!(
                counted.samples.iter().any(|s| s.name == "herald_queue_depth"
                    && s.labels.get("queue").map(String::as_str) == Some(part)),
                "no herald_queue_depth{{queue=\"{part}\"}}: {context}"
            );
        }
        assert!(counted.has("herald_stats_lag_seconds"), "{context}");

        // Bounded labels: no tenant, application, endpoint or message id (nor
        // uid) anywhere, and every route label is a template.
        let mut secret_ids = vec![
            herald.tenant.id.clone(),
            good_app,
            bad_app,
            good_endpoint,
            bad_endpoint,
            "metrics-good-app".to_owned(),
            "metrics-missing-app".to_owned(),
        ];
        secret_ids.extend(ids);
        for id in &secret_ids {
            assert!(!after.text.contains(id.as_str()), "{id} in the metrics:\n{}", after.text);
        }
        for sample in after.samples.iter().filter(|s| s.name.starts_with("herald_http_")) {
            let route = &sample.labels["route"];
            assert!(route == "unmatched" || route.starts_with('/'), "{sample:?}");
        }
        assert!(after.label_values().all(|v| !v.starts_with("msg_")));
    }

    async fn a_metrics_token_gates_the_scrape() {
        let token = "scrape-token-0123456789";
        let Some(herald) = Herald::start_with(Options {
            env: vec![("HERALD_METRICS_TOKEN".into(), token.into())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let url = format!("{}/metrics", herald.url);
        let denied = [
            herald.http.get(&url),
            herald.http.get(&url).bearer_auth("scrape-token-wrong-0000"),
            herald.http.get(&url).bearer_auth(&herald.tenant.key),
            herald.http.get(&url).header("authorization", format!("Basic {token}")),
        ];
        for request in denied {
            let reply = Herald::reply(request.send().await.expect("request reaches herald")).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
            assert!(!reply.body.to_string().contains("herald_"), "{reply:?}");
        }
        let scraped = scrape(&herald.http, &herald.url, Some(token)).await;
        assert!(scraped.has(ACCEPTED), "{}", scraped.text);
        // The rest of the API is untouched by the metrics token.
        assert_eq!(herald.get("/api/v1/app").await.status, 200);
    }

    async fn a_worker_only_process_serves_delivery_metrics_on_its_own_address() {
        // The harness's server runs the API alone; the worker is started by hand.
        let Some(api) = Herald::start().await else {
            return;
        };
        let receiver = Receiver::start().await;
        receiver.script("fail", &[500]);
        app_with_endpoint(&api, "worker-ok", &receiver.url("ok")).await;
        app_with_endpoint(&api, "worker-fail", &receiver.url("fail")).await;
        let worker = WorkerProcess::start(&api.db.url);
        let http = &api.http;

        let health = http
            .get(format!("{}/health", worker.metrics_url))
            .send()
            .await
            .expect("health reaches the worker");
        assert_eq!(health.status(), StatusCode::OK);
        let elsewhere = http
            .get(format!("{}/api/v1/app", worker.metrics_url))
            .send()
            .await
            .expect("request reaches the worker");
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
        let before = scrape(http, &worker.metrics_url, None).await;
        assert_delivery_series(&before);

        let n = 2;
        post_messages(&api, "worker-ok", n).await;
        post_messages(&api, "worker-fail", 1).await;
        receiver.wait_for("ok", n, Duration::from_secs(30)).await;
        receiver.wait_for("fail", 3, Duration::from_secs(30)).await;
        let after = scrape_until(http, &worker.metrics_url, |s| {
            s.sum(ATTEMPTS, &[("outcome", "success")]) >= n as f64
                && s.sum(DEAD, &[]) >= 1.0
        })
        .await;
        let context = format!("scrape:\n{}\nworker log:\n{}", after.text, worker.log());
        assert_eq!(after.sum(ATTEMPTS, &[("outcome", "success")]), n as f64, "{context}");
        assert_eq!(after.sum(ATTEMPTS, &[("outcome", "5xx")]), 3.0, "{context}");
        assert_eq!(after.sum(&format!("{ATTEMPT_SECONDS}_count"), &[]), (n + 3) as f64, "{context}");
        assert_eq!(after.sum(RETRIES, &[]), 2.0, "{context}");
        assert_eq!(after.sum(DEAD, &[]), 1.0, "{context}");
        assert_eq!(after.sum(RELAYED, &[]), (n + 1) as f64, "{context}");
        assert_eq!(after.kind(ATTEMPT_SECONDS), Some("histogram"), "{context}");
        assert_delivery_series(&after);
        // The API's series live in the API process.
        assert!(!after.has(REQUESTS) && !after.has(ACCEPTED), "{context}");

        // And the API process counted what it accepted, but delivered nothing.
        let api_scrape = scrape(http, &api.url, None).await;
        assert_eq!(api_scrape.sum(ACCEPTED, &[]), (n + 1) as f64, "{}", api_scrape.text);
        assert!(!api_scrape.has(ATTEMPTS), "{}", api_scrape.text);
    }
}

#[test]
fn the_parser_reads_the_text_format() {
    let text = "# HELP a_total A counter\n# TYPE a_total counter\n\
                a_total{route=\"/x/{id}\",q=\"say \\\"hi\\\"\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n\
                # TYPE g gauge\ng -1.5e-3 1700000000000\n";
    let scrape = parse(text).expect("valid text");
    assert_eq!(scrape.sum("a_total", &[("route", "/x/{id}")]), 3.0);
    assert_eq!(scrape.samples[0].labels["q"], "say \"hi\"\n");
    assert_eq!(scrape.sum("h_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(scrape.sum("g", &[]), -0.0015);
    assert!(parse("no_type 1\n").is_err());
    assert!(parse("# TYPE x counter\nx{a=b} 1\n").is_err());
    assert!(parse("# TYPE x counter\nx one\n").is_err());
}
