//! Delivery end to end: the real binary (API + worker roles) delivers posted
//! messages to a real local receiver, signed, retried on the configured
//! schedule, and dead after the last attempt.

use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options};
use serde_json::json;

async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        ..Options::default()
    })
    .await
}

async fn delivery_state(herald: &Herald, msg_id: &str) -> (String, i32) {
    let mut conn = herald.db().await;
    sqlx::query_as("SELECT state, attempts FROM delivery WHERE msg_id = $1")
        .bind(msg_id)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn wait_for_state(herald: &Herald, msg_id: &str, state: &str) -> (String, i32) {
    for _ in 0..300 {
        let current = delivery_state(herald, msg_id).await;
        if current.0 == state {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delivery_state(herald, msg_id).await
}

herald_e2e::e2e_tests! {
    async fn a_posted_message_arrives_signed_and_byte_identical() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ep = herald
            .post("/api/v1/app/a/endpoint", json!({"url": receiver.url("ok")}))
            .await;
        assert_eq!(ep.status, 201, "{ep:?}");
        let secret = herald
            .get(&format!(
                "/api/v1/app/a/endpoint/{}/secret",
                ep.body["id"].as_str().unwrap()
            ))
            .await
            .body["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let payload = r#"{"b": 2,  "a": [1.50, "x"]}"#;
        let body = format!(r#"{{"eventType": "invoice.paid", "payload": {payload}}}"#);
        let created = herald
            .request_raw(
                reqwest::Method::POST,
                "/api/v1/app/a/msg",
                Some(&herald.tenant.key),
                "application/json",
                body.into_bytes(),
            )
            .await;
        assert_eq!(created.status, 202);
        let msg_id = created.body["id"].as_str().unwrap().to_owned();

        let got = receiver.wait_for("ok", 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "not delivered; server log:\n{}", herald.log());
        let request = &got[0];
        assert_eq!(&request.body[..], payload.as_bytes());
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        assert_eq!(header("webhook-id"), msg_id);
        assert_eq!(header("svix-id"), msg_id);
        assert_eq!(header("content-type"), "application/json");
        assert!(header("user-agent").starts_with("Herald/"));
        let key = herald_signature::parse_secret(&secret).unwrap();
        let headers = herald_signature::standard::WebhookHeaders {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
        };
        herald_signature::standard::verify(&key, &headers, &request.body, Duration::from_secs(300))
            .expect("signature verifies");
        assert_eq!(
            wait_for_state(&herald, &msg_id, "succeeded").await,
            ("succeeded".into(), 1)
        );
    }
}

herald_e2e::e2e_tests! {
    async fn failures_are_retried_on_schedule_until_success_or_death() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("flaky", &[500, 500, 200]);
        receiver.script("down", &[500]);
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        herald
            .post(
                "/api/v1/app/a/endpoint",
                json!({"url": receiver.url("flaky"), "channels": ["flaky"]}),
            )
            .await;
        herald
            .post(
                "/api/v1/app/a/endpoint",
                json!({"url": receiver.url("down"), "channels": ["down"]}),
            )
            .await;
        let flaky = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "t", "payload": {}, "channels": ["flaky"]}),
            )
            .await;
        let down = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "t", "payload": {}, "channels": ["down"]}),
            )
            .await;

        // Schedule "1,1": three attempts about a second apart.
        let flaky_id = flaky.body["id"].as_str().unwrap();
        assert_eq!(
            wait_for_state(&herald, flaky_id, "succeeded").await,
            ("succeeded".into(), 3),
            "server log:\n{}",
            herald.log()
        );
        let attempts = receiver.received("flaky");
        assert_eq!(attempts.len(), 3);
        for pair in attempts.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(700),
                "retried too early: {gap:?}"
            );
        }
        let ids: Vec<_> = attempts
            .iter()
            .map(|r| r.headers.get("webhook-id").cloned())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "the message id is stable across retries"
        );

        let down_id = down.body["id"].as_str().unwrap();
        assert_eq!(
            wait_for_state(&herald, down_id, "dead").await,
            ("dead".into(), 3)
        );
        assert_eq!(receiver.received("down").len(), 3);
    }
}
