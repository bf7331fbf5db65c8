//! Retry policies end to end: `retryPolicy` on applications and endpoints
//! (set, inherited endpoint → application → server, validated), and the
//! worker following it against a real local receiver — the schedule exactly
//! when jitter is off, 4xx answers final when the policy says so, a
//! `Retry-After` honoured, and a 410 Gone disabling the endpoint after one
//! attempt until it is enabled again and recovered.

mod common;

use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options};
use serde_json::{json, Value};

/// A server with the worker on RabbitMQ (services) or in process (embedded),
/// whose own schedule is `1,1` (the test default) with jitter on.
async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        ..Options::default()
    })
    .await
}

async fn delivery(herald: &Herald, msg_id: &str, endpoint_id: &str) -> (String, i32) {
    let mut conn = herald.db().await;
    sqlx::query_as("SELECT state, attempts FROM delivery WHERE msg_id = $1 AND endpoint_id = $2")
        .bind(msg_id)
        .bind(endpoint_id)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Polls until the delivery is in `state` (at most 20 s); the last
/// `(state, attempts)` seen.
async fn wait_for_state(
    herald: &Herald,
    msg_id: &str,
    endpoint_id: &str,
    state: &str,
) -> (String, i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = delivery(herald, msg_id, endpoint_id).await;
        if current.0 == state || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_endpoint(herald: &Herald, app: &str, body: Value) -> String {
    let reply = herald
        .post(&format!("/api/v1/app/{app}/endpoint"), body)
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn post_message(herald: &Herald, app: &str) -> String {
    let reply = herald
        .post(
            &format!("/api/v1/app/{app}/msg"),
            json!({"eventType": "invoice.paid", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Seconds between consecutive requests.
fn gaps(received: &[herald_e2e::receiver::Received]) -> Vec<f64> {
    received
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at).as_secs_f64())
        .collect()
}

herald_e2e::e2e_tests! {
    async fn retry_policies_are_set_kept_cleared_and_shown() {
        let Some(herald) = Herald::start().await else { return };
        let app_policy = json!({"exponential": {"initialDelay": 5, "multiplier": 2.0, "maxDelay": 600, "maxAttempts": 6}, "clientErrors": "final"});
        let app = herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a", "retryPolicy": app_policy}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");
        assert_eq!(app.body["retryPolicy"], app_policy);

        // An application without a policy shows null.
        let plain = herald.post("/api/v1/app", json!({"name": "B"})).await;
        assert_eq!(plain.body["retryPolicy"], Value::Null, "{plain:?}");

        let policy = json!({"schedule": [1, 2], "jitter": false});
        let ep = herald
            .post("/api/v1/app/a/endpoint", json!({"url": "https://example.com/hook", "retryPolicy": policy}))
            .await;
        assert_eq!(ep.status, 201, "{ep:?}");
        assert_eq!(ep.body["retryPolicy"], policy);
        let path = format!("/api/v1/app/a/endpoint/{}", ep.body["id"].as_str().unwrap());

        // A PUT that does not name the field (every Svix SDK) keeps it.
        let put = herald
            .put(&path, json!({"url": "https://example.com/other"}))
            .await;
        assert_eq!(put.status, 200, "{put:?}");
        assert_eq!(put.body["retryPolicy"], policy);
        let listed = herald.get("/api/v1/app/a/endpoint").await;
        assert_eq!(listed.body["data"][0]["retryPolicy"], policy, "{listed:?}");

        // PATCH changes it, null clears it.
        let patched = herald
            .patch(&path, json!({"retryPolicy": {"clientErrors": "retry"}}))
            .await;
        assert_eq!(patched.body["retryPolicy"], json!({"clientErrors": "retry"}), "{patched:?}");
        let cleared = herald.patch(&path, json!({"retryPolicy": null})).await;
        assert_eq!(cleared.status, 200, "{cleared:?}");
        assert_eq!(cleared.body["retryPolicy"], Value::Null);
        assert_eq!(herald.get(&path).await.body["retryPolicy"], Value::Null);

        // The application's policy: PUT without it keeps it, PATCH null clears it.
        let put_app = herald.put("/api/v1/app/a", json!({"name": "A2"})).await;
        assert_eq!(put_app.body["retryPolicy"], app_policy, "{put_app:?}");
        let patch_app = herald
            .patch("/api/v1/app/a", json!({"retryPolicy": null}))
            .await;
        assert_eq!(patch_app.body["retryPolicy"], Value::Null, "{patch_app:?}");
    }

    async fn bad_retry_policies_are_refused_and_store_nothing() {
        let Some(herald) = Herald::start().await else { return };
        let app = herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        assert_eq!(app.status, 201);
        let bad = [
            json!({"schedule": [1], "exponential": {"initialDelay": 1, "multiplier": 2.0, "maxDelay": 10, "maxAttempts": 3}}),
            json!({"exponential": {"initialDelay": 1, "multiplier": 0.5, "maxDelay": 10, "maxAttempts": 3}}),
            json!({"exponential": {"initialDelay": 1, "multiplier": 2.0, "maxDelay": 10, "maxAttempts": 1}}),
            json!({"exponential": {"initialDelay": 20, "multiplier": 2.0, "maxDelay": 10, "maxAttempts": 3}}),
            json!({"schedule": [1, 10_000_000]}),
            json!({"clientErrors": "sometimes"}),
            json!({"jitter": "yes"}),
            json!({"retries": 3}),
            json!([1, 2]),
        ];
        for policy in &bad {
            for (method, path, body) in [
                ("POST", "/api/v1/app/a/endpoint".to_owned(), json!({"url": "https://example.com/", "retryPolicy": policy})),
                ("POST", "/api/v1/app".to_owned(), json!({"name": "B", "retryPolicy": policy})),
                ("PATCH", "/api/v1/app/a".to_owned(), json!({"retryPolicy": policy})),
            ] {
                let reply = match method {
                    "POST" => herald.post(&path, body).await,
                    _ => herald.patch(&path, body).await,
                };
                assert_eq!(reply.status, 422, "{method} {path} with {policy}: {reply:?}");
                let detail = &reply.body["detail"][0];
                assert_eq!(detail["loc"][0], "body", "{policy}: {reply:?}");
                assert!(
                    detail["loc"].to_string().contains("retryPolicy"),
                    "{method} {path} with {policy}: the error names the field: {reply:?}"
                );
                assert!(!detail["msg"].as_str().unwrap_or_default().is_empty(), "{reply:?}");
            }
        }
        assert_eq!(herald.count_rows("endpoint").await, 0, "a refused endpoint was stored");
        assert_eq!(herald.count_rows("application").await, 1, "a refused application was stored");
        assert_eq!(herald.get("/api/v1/app/a").await.body["retryPolicy"], Value::Null);
    }

    async fn an_endpoint_s_retry_policy_is_followed_exactly() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("own", &[500]);
        receiver.script("inherits", &[500]);
        // The application's policy: one retry after 5 s (jitter on, ±20%).
        let app = herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a", "retryPolicy": {"schedule": [5]}}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");
        // The endpoint's own: three attempts, 1 s then 2 s apart, no jitter.
        let own = create_endpoint(&herald, "a", json!({
            "url": receiver.url("own"),
            "retryPolicy": {"schedule": [1, 2], "jitter": false}
        })).await;
        let inherits = create_endpoint(&herald, "a", json!({"url": receiver.url("inherits")})).await;
        let msg_id = post_message(&herald, "a").await;

        assert_eq!(
            wait_for_state(&herald, &msg_id, &own, "dead").await,
            ("dead".into(), 3),
            "server log:\n{}", herald.log()
        );
        assert_eq!(
            wait_for_state(&herald, &msg_id, &inherits, "dead").await,
            ("dead".into(), 2),
            "server log:\n{}", herald.log()
        );
        // Nothing more arrives after the last attempt.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = receiver.received("own");
        assert_eq!(got.len(), 3, "attempts to the endpoint with its own policy");
        let got_gaps = gaps(&got);
        // The receiver sees each attempt a little after the worker's delay
        // ends (the answer's round trip, the queue's hand-off); never before.
        for (gap, scheduled) in got_gaps.iter().zip([1.0, 2.0]) {
            assert!(
                (scheduled - 0.02..scheduled + 0.75).contains(gap),
                "gaps {got_gaps:?}, scheduled [1, 2] s without jitter"
            );
        }
        let inherited = receiver.received("inherits");
        assert_eq!(inherited.len(), 2, "the application's schedule allows 2 attempts");
        let inherited_gap = gaps(&inherited)[0];
        assert!(
            (4.0..6.75).contains(&inherited_gap),
            "the application's 5 s ±20% retry came after {inherited_gap} s"
        );
    }

    async fn client_errors_end_the_delivery_when_the_policy_says_final() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("final", &[400]);
        receiver.script("retried", &[400]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let final_ep = create_endpoint(&herald, "a", json!({
            "url": receiver.url("final"),
            "retryPolicy": {"clientErrors": "final"}
        })).await;
        let retried_ep = create_endpoint(&herald, "a", json!({"url": receiver.url("retried")})).await;
        let msg_id = post_message(&herald, "a").await;

        assert_eq!(
            wait_for_state(&herald, &msg_id, &final_ep, "failed").await,
            ("failed".into(), 1),
            "server log:\n{}", herald.log()
        );
        // The default retries a 400, as Svix does: the server's `1,1` schedule.
        assert_eq!(
            wait_for_state(&herald, &msg_id, &retried_ep, "dead").await,
            ("dead".into(), 3)
        );
        assert_eq!(receiver.received("final").len(), 1, "a final 400 is not retried");
        assert_eq!(receiver.received("retried").len(), 3);
    }

    async fn a_retry_after_on_503_is_honoured() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("busy", &[503, 200]);
        receiver.response_headers("busy", &[("retry-after", "2")]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let ep = create_endpoint(&herald, "a", json!({"url": receiver.url("busy")})).await;
        let msg_id = post_message(&herald, "a").await;

        assert_eq!(
            wait_for_state(&herald, &msg_id, &ep, "succeeded").await,
            ("succeeded".into(), 2),
            "server log:\n{}", herald.log()
        );
        let got = receiver.received("busy");
        let gap = gaps(&got)[0];
        // The server's schedule alone would retry after 0.8–1.2 s.
        assert!(gap >= 2.0, "retried {gap} s after a 503 with Retry-After: 2");
    }

    async fn an_endpoint_answering_410_is_disabled_after_one_attempt_until_enabled_and_recovered() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("gone", &[410]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let started = chrono::Utc::now() - chrono::Duration::seconds(5);
        let ep = create_endpoint(&herald, "a", json!({"url": receiver.url("gone")})).await;
        let path = format!("/api/v1/app/a/endpoint/{ep}");
        let first = post_message(&herald, "a").await;

        assert_eq!(
            wait_for_state(&herald, &first, &ep, "failed").await,
            ("failed".into(), 1),
            "server log:\n{}", herald.log()
        );
        let disabled = common::poll(Duration::from_secs(10), || async {
            (herald.get(&path).await.body["disabled"] == json!(true)).then_some(())
        })
        .await;
        assert!(disabled.is_some(), "the endpoint was not disabled");
        // A disabled endpoint gets no new deliveries.
        let second = post_message(&herald, "a").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(receiver.received("gone").len(), 1, "a 410 is never retried");

        // Enabled again, it gets new messages, and recover sends what failed.
        receiver.script("gone", &[200]);
        let enabled = herald.patch(&path, json!({"disabled": false})).await;
        assert_eq!(enabled.status, 200, "{enabled:?}");
        let third = post_message(&herald, "a").await;
        let recovered = herald
            .post(&format!("{path}/recover"), json!({"since": started.to_rfc3339()}))
            .await;
        assert_eq!(recovered.status, 202, "{recovered:?}");
        assert_eq!(
            wait_for_state(&herald, &first, &ep, "succeeded").await.0,
            "succeeded",
            "server log:\n{}", herald.log()
        );
        assert_eq!(wait_for_state(&herald, &third, &ep, "succeeded").await.0, "succeeded");
        let ids: Vec<String> = receiver
            .received("gone")
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        assert!(!ids.contains(&second), "a message posted while disabled is not sent: {ids:?}");
        assert_eq!(ids.len(), 3, "{ids:?}");
    }
}
