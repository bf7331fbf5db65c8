//! Text settings whose value happens to look like a number must be read from
//! the environment exactly as written: a one-value retry schedule (`"1"`:
//! retry once, after a second), numeric key prefixes, and an admin token of
//! digits with a leading zero.
//!
//! Found while writing `ssrf.rs`: figment types environment values, so
//! `HERALD_RETRY_SCHEDULE=1` stopped the server at start-up ("invalid type:
//! found unsigned int `1`, expected a string"), and a value turned into a
//! number and back loses its leading zeros (`01234…` becomes `1234…`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{herald_bin, Herald, Options, TestDatabase};
use serde_json::json;
use sqlx::Connection;

#[tokio::test]
async fn a_one_value_retry_schedule_retries_exactly_once() {
    let Some(herald) = Herald::start_with(Options {
        worker: true,
        env: vec![("HERALD_RETRY_SCHEDULE".into(), "1".into())],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script("down", &[500]);
    herald
        .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
        .await;
    let ep = herald
        .post(
            "/api/v1/app/a/endpoint",
            json!({"url": receiver.url("down")}),
        )
        .await;
    assert_eq!(ep.status, 201, "{ep:?}");
    let msg = herald
        .post(
            "/api/v1/app/a/msg",
            json!({"eventType": "t", "payload": {}}),
        )
        .await;
    assert_eq!(msg.status, 202, "{msg:?}");
    let msg_id = msg.body["id"].as_str().unwrap().to_owned();

    let mut db = sqlx::PgConnection::connect(&herald.db.url).await.unwrap();
    let mut state = (String::new(), 0);
    for _ in 0..300 {
        state = sqlx::query_as("SELECT state, attempts FROM delivery WHERE msg_id = $1")
            .bind(&msg_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
        if state.0 == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, ("dead".to_owned(), 2), "{}", herald.log());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received("down").len(), 2);
}

#[tokio::test]
async fn numeric_looking_text_settings_are_accepted() {
    let Some(herald) = Herald::start_with(Options {
        env: vec![
            ("HERALD_REDIS_PREFIX".into(), "7".into()),
            ("HERALD_AMQP_PREFIX".into(), "42".into()),
        ],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let health = herald.get("/api/v1/health").await;
    assert_eq!(health.status, 204, "{health:?}");
}

/// A `herald serve` started by hand (the harness picks its own admin token).
struct Server {
    child: Child,
    log_path: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

#[tokio::test]
async fn an_admin_token_of_digits_is_used_exactly_as_written() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // 20 digits with a leading zero: read as a number it would become
    // "1234567890123456789", a different (and still valid-looking) token.
    let token = "01234567890123456789";
    let log_path = std::env::temp_dir().join(format!("{}.log", db.name));
    let log = std::fs::File::create(&log_path).expect("create server log file");
    let child = Command::new(herald_bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_DATABASE_URL", &db.url)
        .env("HERALD_DATABASE_MAX_CONNECTIONS", "5")
        .env("HERALD_ROLES", "api")
        .env("HERALD_ADMIN_TOKEN", token)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn herald serve");
    let mut server = Server { child, log_path };
    let stdout = server.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("herald: listening on ") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    // Disconnected (the process exited) or 60 s without the line.
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "herald did not start with HERALD_ADMIN_TOKEN={token}; its log:\n{}",
                std::fs::read_to_string(&server.log_path).unwrap_or_default()
            )
        });
    let reply = reqwest::Client::new()
        .get(format!("{url}/admin/v1/tenants"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request reaches herald");
    assert_eq!(
        reply.status(),
        200,
        "the admin API refused the token as written: {}",
        reply.text().await.unwrap_or_default()
    );
}
