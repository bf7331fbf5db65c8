//! The SSRF guard through the real binary: with an empty `HERALD_SSRF_ALLOW`
//! (the production default) a worker must refuse, before connecting, endpoints
//! that point at loopback (in every spelling, and through a host name that
//! resolves to it), private networks or the cloud metadata address. Each
//! refusal is recorded as an attempt with status 0 and error class `blocked`,
//! the delivery ends `failed` after that one attempt (retrying cannot make a
//! refused address allowed), and the local listeners the loopback URLs point
//! at never see a connection.
//!
//! Endpoint creation does not check addresses (it cannot know the worker's
//! allow-list, and DNS answers change), so the refusal is the worker's; the
//! test would also accept a 422 from creation, as long as nothing is stored.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_e2e::{Herald, Options};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TCP listener that counts every connection it accepts (and answers any
/// request 200), so "nothing reached it" means not even a connection.
struct Counter {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    async fn bind(address: &str) -> Option<Self> {
        let listener = TcpListener::bind(address).await.ok()?;
        let port = listener.local_addr().ok()?.port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Some(Self {
            port,
            connections,
            task,
        })
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

herald_e2e::e2e_tests! {
    async fn deliveries_to_internal_addresses_are_refused_before_connecting() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![
                // Empty: no CIDR is exempt (config.rs skips blank entries).
                ("HERALD_SSRF_ALLOW".into(), String::new()),
                // A schedule with a retry, which a refused attempt must not use.
                ("HERALD_RETRY_SCHEDULE".into(), "1".into()),
            ],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let v4 = Counter::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        // IPv6 loopback may be unavailable; the URL is refused before any
        // connection either way, and with a listener we also prove nothing came.
        let v6 = Counter::bind("[::1]:0").await;
        let v6_port = v6.as_ref().map_or(v4.port, |c| c.port);

        // The listeners work: a direct connection is counted.
        for counter in std::iter::once(&v4).chain(v6.as_ref()) {
            let address = if counter.port == v4.port {
                format!("127.0.0.1:{}", counter.port)
            } else {
                format!("[::1]:{}", counter.port)
            };
            drop(
                tokio::net::TcpStream::connect(&address)
                    .await
                    .expect("connect"),
            );
        }
        let control = common::poll(Duration::from_secs(5), || async {
            (v4.count() == 1 && v6.as_ref().is_none_or(|c| c.count() == 1)).then_some(())
        })
        .await;
        assert!(
            control.is_some(),
            "the test listeners do not count connections"
        );
        let baseline = v4.count() + v6.as_ref().map_or(0, Counter::count);

        let port = v4.port;
        let urls = vec![
            format!("http://127.0.0.1:{port}/x"),
            "http://10.0.0.1/x".to_owned(),
            "http://169.254.169.254/latest/meta-data".to_owned(),
            format!("http://[::1]:{v6_port}/x"),
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            format!("http://localhost:{port}/x"),
            // Other spellings of loopback and "this host".
            format!("http://0.0.0.0:{port}/x"),
            format!("http://2130706433:{port}/x"),
            format!("http://0x7f.1:{port}/x"),
            format!("http://[::]:{v6_port}/x"),
            "http://192.168.0.1/x".to_owned(),
            "http://100.64.0.1/x".to_owned(),
        ];

        let app = herald
            .post("/api/v1/app", json!({"name": "SSRF", "uid": "ssrf"}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");
        let mut created = Vec::new(); // (url, endpoint id)
        let mut refused_at_creation = Vec::new();
        for url in &urls {
            let reply = herald
                .post("/api/v1/app/ssrf/endpoint", json!({"url": url}))
                .await;
            match reply.status.as_u16() {
                201 => created.push((url.clone(), reply.body["id"].as_str().unwrap().to_owned())),
                422 => {
                    assert_eq!(
                        reply.body["detail"][0]["loc"],
                        json!(["body", "url"]),
                        "{url}: {reply:?}"
                    );
                    refused_at_creation.push(url.clone());
                }
                other => panic!("creating an endpoint for {url}: unexpected {other}: {reply:?}"),
            }
        }
        assert_eq!(
            herald.count_rows("endpoint").await as usize,
            created.len(),
            "an endpoint refused at creation was stored"
        );
        eprintln!(
            "refused at endpoint creation (API): {refused_at_creation:?}\n\
             refused at delivery (worker): {:?}",
            created.iter().map(|(url, _)| url).collect::<Vec<_>>()
        );

        let msg = herald
            .post(
                "/api/v1/app/ssrf/msg",
                json!({"eventType": "probe", "payload": {"x": 1}}),
            )
            .await;
        assert_eq!(msg.status, 202, "{msg:?}");
        let msg_id = msg.body["id"].as_str().unwrap().to_owned();

        // Every delivery ends ...
        let mut db = common::db(&herald).await;
        let finished = common::poll(Duration::from_secs(30), || {
            let msg_id = msg_id.clone();
            let herald = &herald;
            async move {
                let mut db = herald.db().await;
                let states: Vec<(String, String)> =
                    sqlx::query_as("SELECT endpoint_id, state FROM delivery WHERE msg_id = $1")
                        .bind(&msg_id)
                        .fetch_all(&mut db)
                        .await
                        .ok()?;
                states
                    .iter()
                    .all(|(_, s)| s == "dead" || s == "failed" || s == "succeeded")
                    .then_some(states)
            }
        })
        .await;
        let states = finished.unwrap_or_else(|| {
            panic!(
                "deliveries did not finish within 30 s\n--- server log ---\n{}",
                herald.log()
            )
        });
        assert_eq!(
            states.len(),
            created.len(),
            "one delivery per endpoint: {states:?}"
        );

        // ... failed after exactly one attempt, refused by the guard ...
        let mut failures = Vec::new();
        for (url, endpoint_id) in &created {
            let state = states
                .iter()
                .find(|(ep, _)| ep == endpoint_id)
                .map(|(_, s)| s.as_str());
            if state != Some("failed") {
                failures.push(format!("{url}: delivery state {state:?}, expected failed"));
            }
            let attempts: Vec<(i32, Option<String>, String)> = sqlx::query_as(
                "SELECT status_code, error_class, url FROM message_attempt
                 WHERE msg_id = $1 AND endpoint_id = $2 ORDER BY id",
            )
            .bind(&msg_id)
            .bind(endpoint_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
            if attempts.len() != 1 {
                failures.push(format!(
                    "{url}: {} attempts recorded, expected exactly 1",
                    attempts.len()
                ));
            }
            for (status, class, recorded_url) in &attempts {
                if *status != 0 || class.as_deref() != Some("blocked") {
                    failures.push(format!(
                        "{url}: attempt with status {status} and error class {class:?}, expected 0 / blocked"
                    ));
                }
                if recorded_url != url {
                    failures.push(format!("{url}: attempt recorded for url {recorded_url}"));
                }
            }
        }
        // ... and nothing reached the loopback listeners.
        let connections = v4.count() + v6.as_ref().map_or(0, Counter::count) - baseline;
        if connections != 0 {
            failures.push(format!(
                "the loopback listeners got {connections} connection(s) from Herald"
            ));
        }
        assert!(
            failures.is_empty(),
            "SSRF guard failures:\n  {}\n--- server log ---\n{}",
            failures.join("\n  "),
            herald.log()
        );
    }
}
