//! Keeps the harness from rotting: runs the real `herald-bench` binary with a
//! few hundred messages against the real `herald` binary in embedded mode
//! (SQLite, in-process queue) and checks its JSON report.
//!
//! The `herald` binary must exist next to this test's profile directory:
//! `cargo test --workspace` builds it; otherwise `cargo build -p herald` first,
//! or point `HERALD_BIN` at one.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};

/// A unique name for this run's files and databases.
fn unique(name: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}_{}_{name}", now.as_secs(), now.subsec_nanos())
}

/// An embedded `herald serve` in a directory of its own, with a tenant key.
struct Server {
    child: Child,
    dir: PathBuf,
    url: String,
    key: String,
}

impl Server {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-bench-{}", unique(name)));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let admin_token = format!("admin-{}", unique(name));
        let log = std::fs::File::create(dir.join("herald.log")).expect("create the log file");
        let mut child = Command::new(herald_e2e::herald_bin())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HERALD_DATABASE_URL",
                format!("sqlite://{}", dir.join("herald.db").display()),
            )
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_ADMIN_TOKEN", &admin_token)
            .env("HERALD_DEFAULT_TENANT", "false")
            .env("HERALD_SSRF_ALLOW", "127.0.0.0/8")
            .env("HERALD_RETRY_SCHEDULE", "1,1")
            // A fail-first endpoint fails every message's first arrival, 20
            // in a row, which would open its circuit breaker for 30 s: these
            // runs measure retries, not the breaker.
            .env("HERALD_BREAKER_FAILURES", "0")
            .env("HERALD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("herald: listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            dir,
            url: String::new(),
            key: String::new(),
        };
        server.url = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("herald did not start; its log:\n{}", server.log()));
        let reply = reqwest::Client::new()
            .post(format!("{}/admin/v1/tenants", server.url))
            .bearer_auth(&admin_token)
            .json(&serde_json::json!({"name": "bench"}))
            .send()
            .await
            .expect("create a tenant");
        assert!(reply.status().is_success(), "create a tenant: {reply:?}");
        let tenant: Value = reply.json().await.expect("tenant JSON");
        server.key = tenant["key"].as_str().expect("tenant key").to_owned();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("herald.log")).unwrap_or_default()
    }

    /// Runs `herald-bench` against this server with `args`, sampling the
    /// server's memory, and returns its JSON report.
    async fn bench(&self, args: &[&str]) -> Value {
        let json = self.dir.join(format!("{}.json", unique("report")));
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald-bench"))
            .args(["--server-url", &self.url, "--token", &self.key])
            .args(["--server-pid", &self.child.id().to_string()])
            .args(["--deadline", "20", "--json"])
            .arg(&json)
            .args(args)
            .output()
            .await
            .expect("run herald-bench");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "herald-bench {args:?} failed: {}\n{stdout}\n{stderr}\nserver log:\n{}",
            output.status,
            self.log()
        );
        let text = std::fs::read_to_string(&json).expect("the JSON report");
        let report: Value = serde_json::from_str(&text).expect("JSON report");
        // Shown with --nocapture: what a tiny run measures.
        println!("herald-bench {args:?}:\n{stdout}");
        report
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every accepted message reached every endpoint expected to succeed, with
/// valid signatures; the server's memory was sampled and its CPU time read.
/// (Duplicates are allowed: delivery is at least once.)
fn assert_complete(report: &Value, messages: u64, succeeding_endpoints: u64) {
    let figure = |name: &str| {
        report[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    assert_eq!(figure("messages_sent"), messages, "{report:#}");
    assert_eq!(figure("messages_accepted"), messages, "{report:#}");
    assert_eq!(figure("api_errors"), 0, "{report:#}");
    let expected = messages * succeeding_endpoints;
    assert_eq!(figure("deliveries_expected"), expected, "{report:#}");
    assert_eq!(figure("deliveries_received"), expected, "{report:#}");
    assert_eq!(figure("missing_deliveries"), 0, "{report:#}");
    assert_eq!(figure("unexpected_deliveries"), 0, "{report:#}");
    assert_eq!(figure("signature_failures"), 0, "{report:#}");
    assert_eq!(report["deadline_reached"], false, "{report:#}");
    assert_eq!(
        report["end_to_end_latency"]["count"], expected,
        "{report:#}"
    );
    let memory = &report["server_memory"];
    assert!(
        memory["processes"][0]["peak_rss_kb"].as_u64() > Some(0),
        "{memory:#}"
    );
    assert!(memory["peak_rss_sum_kb"].as_u64() > Some(0), "{memory:#}");
    assert_eq!(memory["processes"][0]["gone"], false, "{memory:#}");
    // The server's CPU time was read at both ends; the machine did something.
    let cpu = &report["cpu"];
    assert_eq!(cpu["processes"][0]["kind"], "server", "{cpu:#}");
    assert_eq!(cpu["processes"][0]["gone"], false, "{cpu:#}");
    assert!(
        cpu["processes"][0]["cpu_secs"].as_f64() >= Some(0.0),
        "{cpu:#}"
    );
    assert!(cpu["total_ms_per_message"].as_f64() >= Some(0.0), "{cpu:#}");
    assert!(
        cpu["machine"]["busy_cpu_secs"].as_f64() > Some(0.0),
        "{cpu:#}"
    );
    assert!(
        cpu["machine"]["ms_per_delivery"].as_f64() > Some(0.0),
        "{cpu:#}"
    );
}

#[tokio::test]
async fn closed_loop_single_endpoint() {
    let server = Server::start("single").await;
    let report = server
        .bench(&[
            "--scenario",
            "single",
            "--messages",
            "200",
            "--concurrency",
            "8",
        ])
        .await;
    assert_complete(&report, 200, 1);
    assert_eq!(report["scenario"], "single");
    assert_eq!(report["target_rate_per_sec"], Value::Null);
    assert_eq!(report["api_latency"]["count"], 200);
}

#[tokio::test]
async fn ingest_posts_stripe_signed_events_to_a_source() {
    let server = Server::start("ingest").await;
    let report = server
        .bench(&[
            "--scenario",
            "ingest",
            "--messages",
            "100",
            "--concurrency",
            "8",
        ])
        .await;
    // Every event verified, stored and relayed through the wildcard filter.
    assert_complete(&report, 100, 1);
    assert_eq!(report["scenario"], "ingest");
    assert_eq!(report["api_errors"], 0, "{report:#}");
}

#[tokio::test]
async fn open_loop_mixed_endpoints() {
    let server = Server::start("mixed").await;
    let report = server
        .bench(&[
            "--scenario",
            "mixed",
            "--slow-delay-ms",
            "100",
            "--messages",
            "50",
            "--rate",
            "100",
        ])
        .await;
    // 8 fast endpoints and the slow one succeed; the failing one never does.
    assert_complete(&report, 50, 9);
    assert_eq!(report["target_rate_per_sec"], 100.0);
    assert_eq!(report["sends_skipped"], 0);
    let by_behaviour = &report["end_to_end_by_behaviour"];
    assert_eq!(by_behaviour["fast"]["count"], 8 * 50, "{report:#}");
    assert_eq!(by_behaviour["delay:100"]["count"], 50, "{report:#}");
    assert!(by_behaviour.get("fail").is_none(), "{report:#}");
    assert!(
        report["failing_endpoint_attempts"].as_u64() > Some(0),
        "{report:#}"
    );
}

#[tokio::test]
async fn endpoints_that_fail_first_are_retried() {
    let server = Server::start("retry").await;
    let report = server
        .bench(&[
            "--endpoint",
            "fast",
            "--endpoint",
            "fail-first:1",
            "--messages",
            "20",
            "--concurrency",
            "4",
        ])
        .await;
    assert_complete(&report, 20, 2);
    assert_eq!(report["scenario"], "custom");
    // Each message's first arrival at the second endpoint was answered 500,
    // and its retry delivered it.
    assert!(report["error_answers"].as_u64() >= Some(20), "{report:#}");
    assert_eq!(report["failing_endpoint_attempts"], 0, "{report:#}");
}

/// Skips with a loud notice, or fails under `HERALD_REQUIRE_SERVICES=1`.
fn skip_or_fail(why: &str) {
    if std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("the pgbench ceiling needs {why} (HERALD_REQUIRE_SERVICES=1)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED: the pgbench ceiling needs {why}; set HERALD_REQUIRE_SERVICES=1 to fail instead ***"
    );
}

#[tokio::test]
async fn pgbench_ceiling() {
    if Command::new("pgbench").arg("--version").output().is_err() {
        return skip_or_fail("pgbench on PATH");
    }
    let admin_url = std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin =
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
        {
            Ok(Ok(conn)) => conn,
            _ => return skip_or_fail("PostgreSQL"),
        };
    // Named like the e2e harness's databases, so its sweep removes leftovers.
    let database = format!("herald_e2e_{}", unique("bench"));
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .expect("create the pgbench database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => format!("{admin_url}/{database}"),
    };

    let server = Server::start("pgbench").await;
    let report = server
        .bench(&[
            "--messages",
            "20",
            "--concurrency",
            "4",
            "--pgbench-url",
            &url,
            "--pgbench-seconds",
            "1",
        ])
        .await;
    drop(server);
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let left: Option<String> = sqlx::query_scalar("SELECT to_regclass('bench_message')::text")
        .fetch_one(&mut conn)
        .await
        .expect("look for the pgbench tables");
    conn.close().await.expect("close");
    let _ = sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await;

    assert_eq!(left, None, "the pgbench tables were not dropped");
    assert_complete(&report, 20, 1);
    let pgbench = &report["pgbench"];
    assert_eq!(pgbench["clients"], 4, "{pgbench:#}");
    assert!(
        pgbench["two_insert_tps"].as_f64() > Some(0.0),
        "{pgbench:#}"
    );
    assert!(
        pgbench["one_insert_tps"].as_f64() > Some(0.0),
        "{pgbench:#}"
    );
    assert!(
        pgbench["accept_fraction_of_two_insert"].as_f64() > Some(0.0),
        "{pgbench:#}"
    );
}
