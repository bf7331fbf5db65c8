//! The embedded mode as a newcomer meets it: `herald serve` in an empty
//! directory with no configuration creates `./herald.db`, prints a key for a
//! `default` tenant once, and delivers signed messages with no service
//! installed; a process killed with SIGKILL while deliveries are pending
//! delivers every accepted message after it is started again.
//!
//! Needs nothing but the binary: these tests never skip.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{herald_bin, Herald};
use reqwest::Method;
use serde_json::{json, Value};

/// What a `herald serve` printed on stdout before it listened.
struct Started {
    url: String,
    /// The key of the `default` tenant, when this start created it.
    key: Option<String>,
    lines: Vec<String>,
}

/// A `herald serve` in a directory of its own, with no configuration but a
/// free port and (so the local receiver can be reached) a loopback SSRF
/// allow-list.
struct Embedded {
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Embedded {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("herald-embedded-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the directory");
        let log = dir.join("herald.log");
        Self {
            dir,
            child: None,
            log,
        }
    }

    fn start(&mut self) -> Started {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_SSRF_ALLOW", "127.0.0.0/8")
            .env("HERALD_RETRY_SCHEDULE", "1,1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let listening = line.starts_with("herald: listening on ");
                    lines.push(line);
                    if listening {
                        break;
                    }
                }
                Err(_) => panic!(
                    "herald did not listen within 60 s; stdout: {lines:?}\nlog:\n{}",
                    self.log()
                ),
            }
        }
        let url = lines
            .last()
            .and_then(|l| l.strip_prefix("herald: listening on "))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("listening line")
            .to_owned();
        let key = lines
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with("hsk_"))
            .map(str::to_owned);
        Started { url, key, lines }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends a request with the tenant key to a server started by hand.
async fn call(
    http: &reqwest::Client,
    started: &Started,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> herald_e2e::Reply {
    let mut request = http
        .request(method, format!("{}{path}", started.url))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Herald::reply(request.send().await.expect("request reaches herald")).await
}

fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(false)
}

#[tokio::test]
async fn serve_with_no_configuration_prints_a_key_once_and_delivers_signed() {
    let mut server = Embedded::new();
    let receiver = Receiver::start().await;
    let http = reqwest::Client::new();

    let first = server.start();
    assert!(exists(&server.path("herald.db")), "./herald.db is created");
    assert!(
        first
            .lines
            .iter()
            .any(|l| l.contains("store sqlite") && l.contains("queue in-process")),
        "the start-up names its backends: {:?}",
        first.lines
    );
    assert!(
        first.lines.iter().any(|l| l.contains("/docs")),
        "the docs URL is printed: {:?}",
        first.lines
    );
    let key = first.key.clone().unwrap_or_else(|| {
        panic!(
            "no key printed on the first start: {:?}\n{}",
            first.lines,
            server.log()
        )
    });

    let app = call(
        &http,
        &first,
        &key,
        Method::POST,
        "/api/v1/app",
        Some(json!({"name": "A", "uid": "a"})),
    )
    .await;
    assert_eq!(app.status, 201, "{app:?}");
    let ep = call(
        &http,
        &first,
        &key,
        Method::POST,
        "/api/v1/app/a/endpoint",
        Some(json!({"url": receiver.url("hook"), "uid": "hook"})),
    )
    .await;
    assert_eq!(ep.status, 201, "{ep:?}");
    let secret = call(
        &http,
        &first,
        &key,
        Method::GET,
        "/api/v1/app/a/endpoint/hook/secret",
        None,
    )
    .await
    .body["key"]
        .as_str()
        .expect("secret")
        .to_owned();
    let msg = call(
        &http,
        &first,
        &key,
        Method::POST,
        "/api/v1/app/a/msg",
        Some(json!({"eventType": "invoice.paid", "payload": {"invoice": 42}})),
    )
    .await;
    assert_eq!(msg.status, 202, "{msg:?}");
    let got = receiver.wait_for("hook", 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "not delivered; log:\n{}", server.log());
    let header = |name: &str| {
        got[0]
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("webhook-id"), msg.body["id"].as_str().unwrap());
    let headers = herald_signature::standard::WebhookHeaders {
        id: &header("webhook-id"),
        timestamp: &header("webhook-timestamp"),
        signature: &header("webhook-signature"),
    };
    herald_signature::standard::verify(
        &herald_signature::parse_secret(&secret).unwrap(),
        &headers,
        &got[0].body,
        Duration::from_secs(300),
    )
    .expect("the signature verifies");
    assert_eq!(&got[0].body[..], br#"{"invoice":42}"#);

    // A later start reuses the data and prints no new key.
    server.kill();
    let second = server.start();
    assert_eq!(
        second.key, None,
        "a second key was printed: {:?}",
        second.lines
    );
    let apps = call(&http, &second, &key, Method::GET, "/api/v1/app", None).await;
    assert_eq!(apps.status, 200, "the first key still works: {apps:?}");
    assert_eq!(apps.body["data"][0]["uid"], json!("a"));
}

#[tokio::test]
async fn sigkill_with_deliveries_pending_loses_nothing() {
    const MESSAGES: usize = 300;
    let mut server = Embedded::new();
    let receiver = Receiver::start().await;
    // Slow enough that most deliveries are still pending at the kill.
    receiver.delay("hook", Duration::from_millis(100));
    let http = reqwest::Client::new();
    let first = server.start();
    let key = first.key.clone().expect("the first start prints a key");
    call(
        &http,
        &first,
        &key,
        Method::POST,
        "/api/v1/app",
        Some(json!({"name": "A", "uid": "a"})),
    )
    .await;
    call(
        &http,
        &first,
        &key,
        Method::POST,
        "/api/v1/app/a/endpoint",
        Some(json!({"url": receiver.url("hook")})),
    )
    .await;
    let mut accepted = HashSet::new();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(25) {
        let posts = chunk.iter().map(|i| {
            call(
                &http,
                &first,
                &key,
                Method::POST,
                "/api/v1/app/a/msg",
                Some(json!({"eventType": "t", "payload": {"i": i}})),
            )
        });
        for reply in futures::future::join_all(posts).await {
            assert_eq!(reply.status, 202, "{reply:?}");
            accepted.insert(reply.body["id"].as_str().unwrap().to_owned());
        }
    }
    receiver.wait_for("hook", 20, Duration::from_secs(30)).await;
    server.kill();
    let before = receiver.received("hook").len();
    assert!(
        before < MESSAGES,
        "everything arrived before the kill ({before}); the test proves nothing"
    );

    let _second = server.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let seen: HashSet<String> = receiver
            .received("hook")
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("webhook-id")?
                    .to_str()
                    .ok()
                    .map(str::to_owned)
            })
            .collect();
        let missing: Vec<&String> = accepted.difference(&seen).collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        missing,
        0,
        "{missing} of {MESSAGES} accepted messages never arrived ({before} had before the kill); log:\n{}",
        server.log()
    );
    let total = receiver.received("hook").len();
    eprintln!(
        "embedded SIGKILL: {before} delivered before the kill, {total} requests in all ({} duplicates)",
        total - MESSAGES
    );
}

/// The permission bits of a file, as `0o644`.
#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Embedded::new();
    // A file left world-readable by an older version is tightened too.
    let older = server.path("old.db");
    std::fs::write(&older, b"").expect("create old.db");
    std::fs::set_permissions(&older, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let started = server.start();
    let key = started.key.clone().expect("the first start prints a key");
    // A write makes sure the WAL and shared-memory files exist.
    let app = call(
        &reqwest::Client::new(),
        &started,
        &key,
        Method::POST,
        "/api/v1/app",
        Some(json!({"name": "A"})),
    )
    .await;
    assert_eq!(app.status, 201, "{app:?}");
    for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        let mode = mode_of(&server.path(name));
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    server.kill();

    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&server.log)
        .expect("open the log");
    let status = Command::new(herald_bin())
        .arg("migrate")
        .current_dir(&server.dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_DATABASE_URL", "sqlite://old.db")
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .expect("run herald migrate");
    assert!(status.success(), "migrate failed:\n{}", server.log());
    assert_eq!(mode_of(&older), 0o600, "old.db was not tightened");
}
