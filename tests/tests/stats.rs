//! The stats role end to end: deliveries to a receiver with a known latency
//! mix and some failures, then the stats routes compared with exact values
//! computed from the recorded attempts — percentiles within the histogram's
//! 1% error, counts and success rate exact — and a stats process killed with
//! SIGKILL mid-stream that, restarted, counts every attempt exactly once.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::topology::{create_app, post_messages, Topology, TopologyOptions};
use herald_e2e::{Herald, Options};
use serde_json::{json, Value};

/// The latency mix of issue #5: 10 ms for half the requests, 100 ms for 45%,
/// 1 s for 5%, with two of the fast ones and one slow one failing.
fn latency_plan() -> Vec<(u16, Duration)> {
    let ms = Duration::from_millis;
    let mut plan = vec![(200, ms(10)); 8];
    plan.extend([(500, ms(10)), (500, ms(10))]);
    plan.extend(vec![(200, ms(100)); 8]);
    plan.push((503, ms(100)));
    plan.push((200, ms(1000)));
    plan
}

/// One endpoint's attempts as recorded: (duration in ms, status code).
async fn recorded_attempts(herald: &Herald, endpoint_id: &str) -> Vec<(f64, i64)> {
    let mut db = herald.db().await;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT duration_us, status_code FROM message_attempt WHERE endpoint_id = $1",
    )
    .bind(endpoint_id)
    .fetch_all(&mut db)
    .await
    .expect("read attempts");
    rows.into_iter()
        .map(|(us, status)| (us as f64 / 1000.0, status))
        .collect()
}

async fn unfinished_deliveries(herald: &Herald) -> i64 {
    let mut db = herald.db().await;
    sqlx::query_scalar("SELECT count(*) FROM delivery WHERE state IN ('pending', 'sending')")
        .fetch_one(&mut db)
        .await
        .expect("count deliveries")
}

/// The value at rank ceil(q·n) of the sorted values (HdrHistogram's definition).
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

herald_e2e::e2e_tests! {
    async fn latency_percentiles_and_counts_match_the_recorded_attempts() {
        const MESSAGES: usize = 120;
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            // Failures are retried once, a second later.
            env: vec![("HERALD_RETRY_SCHEDULE".into(), "1".into())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        receiver.plan("mix", &latency_plan());
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ep = herald
            .post("/api/v1/app/a/endpoint", json!({"url": receiver.url("mix")}))
            .await;
        assert_eq!(ep.status, 201, "{ep:?}");
        let ep = ep.body["id"].as_str().unwrap().to_owned();
        for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(20) {
            let posts = chunk.iter().map(|i| {
                herald.post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {"i": i}}))
            });
            for reply in futures::future::join_all(posts).await {
                assert_eq!(reply.status, 202, "{reply:?}");
            }
        }

        // Every delivery finished (retries included) ...
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while unfinished_deliveries(&herald).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries did not finish; log:\n{}",
                herald.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let recorded = recorded_attempts(&herald, &ep).await;
        assert!(recorded.len() > MESSAGES, "failures were retried: {}", recorded.len());

        // ... and counted by the stats role.
        let report_path = format!("/api/v1/app/a/endpoint/{ep}/stats/report?granularity=minute");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let report: Value = loop {
            let reply = herald.get(&report_path).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            if reply.body["attempts"] == json!(recorded.len()) {
                break reply.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stats counted {} of {} attempts; log:\n{}",
                reply.body["attempts"],
                recorded.len(),
                herald.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };

        let successes = recorded.iter().filter(|(_, s)| (200..300).contains(s)).count();
        let failures = recorded.len() - successes;
        assert_eq!(report["successes"], json!(successes), "{report}");
        assert_eq!(report["failures"], json!(failures));
        assert_eq!(report["failuresByClass"]["http5xx"], json!(failures));
        assert_eq!(report["failuresByClass"]["timeout"], json!(0));
        let rate = report["successRate"].as_f64().unwrap();
        assert!((rate - successes as f64 / recorded.len() as f64).abs() < 1e-12, "{rate}");

        let mut durations: Vec<f64> = recorded.iter().map(|(ms, _)| *ms).collect();
        durations.sort_by(f64::total_cmp);
        for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            let exact = exact_quantile(&durations, q);
            let reported = report["latencyMs"][name].as_f64().unwrap();
            assert!(
                (reported - exact).abs() <= exact * 0.01 + 1e-9,
                "{name}: reported {reported} ms, exact {exact} ms (more than 1% apart)"
            );
        }
        let max = *durations.last().unwrap();
        let reported_max = report["latencyMs"]["max"].as_f64().unwrap();
        assert!((reported_max - max).abs() <= max * 0.01 + 1e-9, "max {reported_max} vs {max}");
        let series_attempts: u64 = report["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["attempts"].as_u64().unwrap())
            .sum();
        assert_eq!(series_attempts, recorded.len() as u64, "the series adds up");

        // The application report and the Svix stats route agree.
        let app = herald.get("/api/v1/app/a/stats/report").await.body;
        assert_eq!(app["attempts"], json!(recorded.len()), "{app}");
        assert_eq!(app["endpoints"][0]["endpointId"], json!(ep));
        let svix = herald.get(&format!("/api/v1/app/a/endpoint/{ep}/stats")).await.body;
        assert_eq!(svix["attempts"], json!(recorded.len()), "{svix}");
        assert_eq!(svix["success"].as_u64().unwrap() + svix["fail"].as_u64().unwrap(), MESSAGES as u64);
        assert!(svix["latencyMs"]["p99"].is_number());
    }
}

herald_e2e::e2e_tests! {
    async fn bad_report_requests_are_refused() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        for (query, field) in [
            ("granularity=week", "granularity"),
            ("since=2026-01-01T00:00:00Z&until=2025-01-01T00:00:00Z", "until"),
            ("since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
            ("since=2026-01-01T00:00:00Z&until=2026-01-31T00:00:00Z&granularity=minute", "granularity"),
            ("since=yesterday", "since"),
        ] {
            let reply = herald.get(&format!("/api/v1/app/a/stats/report?{query}")).await;
            assert_eq!(reply.status, 422, "{query}: {reply:?}");
            let loc = reply.body["detail"][0]["loc"].as_array().unwrap().clone();
            assert_eq!(loc.last().unwrap(), &json!(field), "{query}: {reply:?}");
        }
        let empty = herald.get("/api/v1/app/a/stats/report").await;
        assert_eq!(empty.status, 200);
        assert_eq!(empty.body["attempts"], json!(0));
        assert_eq!(empty.body["latencyMs"]["p50"], Value::Null);
        assert_eq!(empty.body["successRate"], Value::Null);
        let other = herald.create_tenant("other").await;
        let foreign = herald
            .request(reqwest::Method::GET, "/api/v1/app/a/stats/report", Some(&other.key), None)
            .await;
        assert_eq!(foreign.status, 404);
    }
}

/// The production topology: API, worker and a separate stats process, which
/// is killed with SIGKILL while it counts (before it acks some events) and
/// started again: the broker redelivers, and nothing is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_process_killed_mid_stream_counts_every_attempt_once() {
    const BURST: usize = 1500;
    let Some(topology) = Topology::start(TopologyOptions::default()).await else {
        return;
    };
    topology.start_stats().await;
    let receiver = Receiver::start().await;
    create_app(&topology.api, "a", &[receiver.url("fast")]).await;
    let posting = tokio::spawn(post_messages(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "a".to_owned(),
        BURST,
        16,
        Arc::new(AtomicUsize::new(0)),
    ));
    receiver
        .wait_for("fast", BURST / 4, Duration::from_secs(60))
        .await;
    topology.kill_worker(); // the stats process: the latest one started
    tokio::time::sleep(Duration::from_millis(500)).await;
    topology.start_stats().await;
    let ids: HashSet<String> = posting.await.expect("posting task").into_iter().collect();
    assert_eq!(ids.len(), BURST);
    let (_, states) = topology
        .wait_for_every_message(&receiver, "fast", &ids, Duration::from_secs(120))
        .await;
    assert_eq!(states.get("succeeded").copied(), Some(BURST as i64));

    let mut db = topology.db().await;
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM message_attempt")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counted = loop {
        let report = topology.api.get("/api/v1/app/a/stats/report").await.body;
        let counted = report["attempts"].as_i64().unwrap_or(-1);
        if counted >= attempts || tokio::time::Instant::now() > deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        counted,
        attempts,
        "every recorded attempt counted exactly once; logs:\n{}",
        topology.logs()
    );
    // And it stays so: no late batch adds a second count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = topology.api.get("/api/v1/app/a/stats/report").await.body;
    assert_eq!(
        report["attempts"].as_i64(),
        Some(attempts),
        "no late double count"
    );
}
