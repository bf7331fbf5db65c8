//! Endpoint health end to end, against real local receivers: `throttleRate`
//! enforced (in one process, and across worker processes through Redis),
//! the circuit breaker opening on a down endpoint and closing after a
//! successful probe while a healthy endpoint of the same application is
//! unaffected, and an endpoint failing past the auto-disable threshold
//! disabled with when and why — reported by an `endpoint.disabled`
//! operational webhook the `svix` library verifies — then delivered to after
//! enable and recover.

mod common;

use std::time::{Duration, Instant};

use herald_e2e::receiver::{Received, Receiver};
use herald_e2e::topology::{Topology, TopologyOptions};
use herald_e2e::{redis_url, Herald, Options};
use serde_json::{json, Value};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_endpoint(herald: &Herald, body: Value) -> String {
    let reply = herald.post("/api/v1/app/a/endpoint", body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Posts `count` messages, `parallel` at a time; their ids in order.
async fn post_messages(herald: &Herald, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(20) {
        let posts = chunk.iter().map(|n| {
            herald.post(
                "/api/v1/app/a/msg",
                json!({"eventType": "invoice.paid", "payload": {"n": n}}),
            )
        });
        for reply in futures::future::join_all(posts).await {
            assert_eq!(reply.status, 202, "{reply:?}");
            ids.push(reply.body["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// The most requests in any one-second window.
fn busiest_second(received: &[Received]) -> usize {
    let mut times: Vec<Instant> = received.iter().map(|r| r.at).collect();
    times.sort();
    times
        .iter()
        .enumerate()
        .map(|(i, start)| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn scalar(herald: &Herald, sql: &str) -> i64 {
    let mut db = herald.db().await;
    sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
}

/// A burst of 100 messages to an endpoint with `throttleRate` 10 arrives at
/// no more than 10 a second, every one delivered at its first attempt.
async fn check_throttled_burst(herald: &Herald, receiver: &Receiver, log: impl Fn() -> String) {
    let app = herald
        .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    create_endpoint(
        herald,
        json!({"url": receiver.url("slow-down"), "throttleRate": 10}),
    )
    .await;
    let started = Instant::now();
    post_messages(herald, 100).await;
    let got = receiver
        .wait_for("slow-down", 100, Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), 100, "not all delivered; log:\n{}", log());
    let span = got.last().unwrap().at.duration_since(got[0].at);
    let busiest = busiest_second(&got);
    eprintln!(
        "100 deliveries at throttleRate 10 took {span:?} (from the first post: {:?}); busiest second {busiest}",
        started.elapsed()
    );
    // 99 gaps of 100 ms; the tolerance covers each request's own latency.
    assert!(
        span >= Duration::from_millis(9_000),
        "100 deliveries in {span:?}"
    );
    assert!(busiest <= 11, "{busiest} deliveries in one second");
    // None was attempted twice or recorded as failed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = receiver.received("slow-down");
    let mut ids: Vec<&str> = all.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    let twice: Vec<&&str> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert_eq!(all.len(), 100, "sent twice: {twice:?}; log:\n{}", log());
    assert_eq!(
        scalar(
            herald,
            "SELECT COUNT(*) FROM message_attempt WHERE status_code <> 200"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(herald, "SELECT COUNT(*) FROM message_attempt").await,
        100
    );
    assert_eq!(
        scalar(
            herald,
            "SELECT COUNT(*) FROM delivery WHERE state <> 'succeeded'"
        )
        .await,
        0
    );
}

herald_e2e::e2e_tests! {
    async fn a_throttled_endpoint_receives_a_burst_at_its_rate() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            redis: true,
            ..Options::default()
        })
        .await else { return };
        let receiver = Receiver::start().await;
        check_throttled_burst(&herald, &receiver, || herald.log()).await;
    }

    async fn a_down_endpoint_opens_its_breaker_and_a_probe_closes_it() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: env(&[
                ("HERALD_BREAKER_FAILURES", "3"),
                ("HERALD_BREAKER_COOLDOWN", "3"),
                ("HERALD_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"),
            ]),
            ..Options::default()
        })
        .await else { return };
        let receiver = Receiver::start().await;
        receiver.script("down", &[503]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let down = create_endpoint(&herald, json!({"url": receiver.url("down")})).await;
        create_endpoint(&herald, json!({"url": receiver.url("healthy")})).await;
        let path = format!("/api/v1/app/a/endpoint/{down}");
        let fresh = herald.get(&path).await;
        assert_eq!(fresh.body["health"], json!({"consecutiveFailures": 0, "failingSince": null, "breaker": "closed", "nextProbeAt": null}), "{fresh:?}");

        let ids = post_messages(&herald, 5).await;
        // The breaker opens after 3 failures in a row, and says until when.
        let open = common::poll(Duration::from_secs(20), || async {
            let ep = herald.get(&path).await;
            (ep.body["health"]["breaker"] == "open").then_some(ep.body)
        })
        .await
        .unwrap_or_else(|| panic!("the breaker did not open; log:\n{}", herald.log()));
        assert!(open["health"]["consecutiveFailures"].as_u64().unwrap() >= 3, "{open}");
        assert!(open["health"]["failingSince"].is_string(), "{open}");
        let next_probe: chrono::DateTime<chrono::Utc> =
            open["health"]["nextProbeAt"].as_str().unwrap().parse().unwrap();
        let attempts_when_open = receiver.received("down").len();

        // While it is open the down endpoint gets nothing, and the healthy
        // one gets new messages as fast as ever.
        let mut healthy_latency = Vec::new();
        for _ in 0..5 {
            let posted = Instant::now();
            let before = receiver.received("healthy").len();
            post_messages(&herald, 1).await;
            let got = receiver.wait_for("healthy", before + 1, Duration::from_secs(5)).await;
            assert_eq!(got.len(), before + 1);
            healthy_latency.push(got.last().unwrap().at.duration_since(posted));
        }
        let until_probe = (next_probe - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(until_probe.saturating_sub(Duration::from_millis(300))).await;
        assert_eq!(
            receiver.received("down").len(),
            attempts_when_open,
            "attempts reached an endpoint whose breaker was open"
        );
        eprintln!("healthy endpoint latency while the other's breaker was open: {healthy_latency:?}");
        assert!(
            healthy_latency.iter().all(|l| *l < Duration::from_secs(1)),
            "the healthy endpoint waited: {healthy_latency:?}"
        );

        // The endpoint comes back: a probe succeeds, the breaker closes and
        // the backlog arrives (the 10 messages it missed, each once more).
        receiver.script("down", &[200]);
        let before_recovery = receiver.received("down").len();
        let closed = common::poll(Duration::from_secs(30), || async {
            let ep = herald.get(&path).await;
            (ep.body["health"]["breaker"] == "closed").then_some(ep.body)
        })
        .await
        .unwrap_or_else(|| panic!("the breaker did not close; log:\n{}", herald.log()));
        assert_eq!(closed["health"]["consecutiveFailures"], 0, "{closed}");
        assert_eq!(closed["health"]["failingSince"], Value::Null, "{closed}");
        let all: usize = 10;
        let delivered = common::poll(Duration::from_secs(30), || async {
            let n = scalar(&herald, &format!(
                "SELECT COUNT(*) FROM delivery WHERE endpoint_id = '{down}' AND state = 'succeeded'"
            )).await;
            (n == all as i64).then_some(())
        })
        .await;
        assert!(delivered.is_some(), "the backlog was not delivered; log:\n{}", herald.log());
        let arrived: std::collections::HashSet<String> = receiver.received("down")[before_recovery..]
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        for id in &ids {
            assert!(arrived.contains(id), "{id} did not arrive after recovery");
        }
        // No delivery was exhausted or failed by the wait.
        assert_eq!(
            scalar(&herald, "SELECT COUNT(*) FROM delivery WHERE state IN ('dead', 'failed')").await,
            0
        );
    }

    async fn an_endpoint_failing_too_long_is_disabled_then_enabled_and_recovered() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: env(&[
                ("HERALD_BREAKER_FAILURES", "0"),
                ("HERALD_AUTO_DISABLE_AFTER", "2"),
                ("HERALD_AUTO_DISABLE_FAILURES", "3"),
                ("HERALD_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1"),
            ]),
            ..Options::default()
        })
        .await else { return };
        let receiver = Receiver::start().await;
        receiver.script("flaky", &[500]);
        // The tenant hears of it through an operational webhook.
        let ops = herald
            .post(
                "/api/v1/operational-webhook/endpoint",
                json!({"url": receiver.url("ops"), "filterTypes": ["endpoint.disabled"]}),
            )
            .await;
        assert_eq!(ops.status, 201, "{ops:?}");
        let ops_key = herald
            .get(&format!("/api/v1/operational-webhook/endpoint/{}/secret", ops.body["id"].as_str().unwrap()))
            .await
            .body["key"]
            .as_str()
            .unwrap()
            .to_owned();
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let started = chrono::Utc::now() - chrono::Duration::seconds(5);
        let ep = create_endpoint(&herald, json!({"url": receiver.url("flaky")})).await;
        let path = format!("/api/v1/app/a/endpoint/{ep}");
        let ids = post_messages(&herald, 3).await;

        let disabled = common::poll(Duration::from_secs(20), || async {
            let ep = herald.get(&path).await;
            (ep.body["disabled"] == true).then_some(ep.body)
        })
        .await
        .unwrap_or_else(|| panic!("the endpoint was not disabled; log:\n{}", herald.log()));
        let reason = disabled["disabledReason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("failing for"), "{disabled}");
        assert!(disabled["disabledAt"].is_string(), "{disabled}");
        assert!(disabled["health"]["consecutiveFailures"].as_u64().unwrap() >= 3, "{disabled}");
        // Disabled, it gets nothing: its deliveries end failed, none dead.
        let reported = receiver.wait_for("ops", 1, Duration::from_secs(20)).await;
        assert_eq!(reported.len(), 1, "no endpoint.disabled operational webhook; log:\n{}", herald.log());
        assert!(reported[0].signed_by(&ops_key), "{:?}", reported[0]);
        let event: Value = serde_json::from_slice(&reported[0].body).unwrap();
        assert_eq!(event["type"], "endpoint.disabled", "{event}");
        assert_eq!(event["data"]["trigger"], "automatic", "{event}");
        assert_eq!(event["data"]["endpointId"], ep.as_str(), "{event}");
        assert_eq!(event["data"]["failSince"], disabled["health"]["failingSince"], "{event}");
        verify_with_svix(&reported[0], &ops_key).await;
        let settled = common::poll(Duration::from_secs(10), || async {
            let open = scalar(&herald, &format!(
                "SELECT COUNT(*) FROM delivery WHERE endpoint_id = '{ep}' AND state NOT IN ('failed', 'dead')"
            )).await;
            (open == 0).then_some(())
        })
        .await;
        assert!(settled.is_some(), "deliveries of a disabled endpoint still open");
        let attempts = receiver.received("flaky").len();
        // A message posted while it is disabled is not sent to it.
        let while_disabled = post_messages(&herald, 1).await.remove(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(receiver.received("flaky").len(), attempts, "attempts after disabling");

        // Enabled again: its health starts afresh, and recover sends what failed.
        receiver.script("flaky", &[200]);
        let enabled = herald.patch(&path, json!({"disabled": false})).await;
        assert_eq!(enabled.status, 200, "{enabled:?}");
        assert_eq!(enabled.body["disabledReason"], Value::Null, "{enabled:?}");
        assert_eq!(enabled.body["health"]["consecutiveFailures"], 0, "{enabled:?}");
        let recovered = herald
            .post(&format!("{path}/recover"), json!({"since": started.to_rfc3339()}))
            .await;
        assert_eq!(recovered.status, 202, "{recovered:?}");
        let delivered = common::poll(Duration::from_secs(20), || async {
            let n = scalar(&herald, &format!(
                "SELECT COUNT(*) FROM delivery WHERE endpoint_id = '{ep}' AND state = 'succeeded'"
            )).await;
            (n == 3).then_some(())
        })
        .await;
        assert!(delivered.is_some(), "not recovered; log:\n{}", herald.log());
        let arrived: Vec<String> = receiver.received("flaky")[attempts..]
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        for id in &ids {
            assert!(arrived.contains(id), "{id} not delivered after recover: {arrived:?}");
        }
        assert!(!arrived.contains(&while_disabled), "recover sends only what failed");

        // replay-missing sends what it never got, once.
        let window = json!({"since": started.to_rfc3339()});
        let replayed = herald.post(&format!("{path}/replay-missing"), window.clone()).await;
        assert_eq!(replayed.status, 202, "{replayed:?}");
        assert_eq!(replayed.body["task"], "endpoint.replay", "{replayed:?}");
        assert_eq!(replayed.body["replayed"], 1, "{replayed:?}");
        let got = receiver.wait_for("flaky", attempts + 4, Duration::from_secs(20)).await;
        assert_eq!(got.last().map(|r| r.header("webhook-id")), Some(while_disabled.as_str()));
        let again = herald.post(&format!("{path}/replay-missing"), window).await;
        assert_eq!(again.body["replayed"], 0, "{again:?}");
        let bad = herald
            .post(&format!("{path}/replay-missing"), json!({"since": "2001-01-01T00:00:00Z"}))
            .await;
        assert_eq!(bad.status, 422, "{bad:?}");
        assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "since"]), "{bad:?}");

        // Disabling by hand says so, and is reported as manual.
        let manual = herald.patch(&path, json!({"disabled": true})).await;
        assert_eq!(manual.body["disabledReason"], "manual", "{manual:?}");
        let reported = receiver.wait_for("ops", 2, Duration::from_secs(20)).await;
        assert_eq!(reported.len(), 2);
        let event: Value = serde_json::from_slice(&reported[1].body).unwrap();
        assert_eq!(event["data"]["trigger"], "manual", "{event}");
    }
}

/// Checks `received` with the official `svix` library from PyPI (and that
/// one changed byte makes it refuse).
async fn verify_with_svix(received: &Received, key: &str) {
    use herald_verifiers::{Case, Verifier};
    let installed = tokio::task::spawn_blocking(herald_verifiers::install)
        .await
        .expect("install task");
    if let Err(why) = installed {
        if std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("Python with the svix package is required: {why}");
        }
        eprintln!("*** SKIPPED the svix check: {why} ***");
        return;
    }
    let headers: Vec<(String, String)> = received
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let case = Case::new(
        "endpoint.disabled",
        Verifier::Svix,
        key.to_owned(),
        headers,
        received.body.to_vec(),
    );
    let cases = vec![case.with_one_byte_changed(), case];
    let report = tokio::task::spawn_blocking(move || herald_verifiers::verify(&cases))
        .await
        .expect("verify task")
        .expect("the verifiers run");
    assert!(report.mismatches().is_empty(), "{report}");
}

/// `throttleRate` holds across worker processes: two workers share the
/// endpoint's slots through Redis.
#[tokio::test]
async fn throttling_holds_across_worker_processes() {
    let prefix = format!("herald-e2e-{}:", uuid::Uuid::new_v4().simple());
    let Some(topology) = Topology::start(TopologyOptions {
        worker_env: env(&[
            ("HERALD_REDIS_URL", &redis_url()),
            ("HERALD_REDIS_PREFIX", &prefix),
        ]),
        ..TopologyOptions::default()
    })
    .await
    else {
        return;
    };
    topology.start_worker().await;
    let receiver = Receiver::start().await;
    check_throttled_burst(&topology.api, &receiver, || topology.logs()).await;
}
