//! Delivery end to end: the real binary (API + worker roles) delivers posted
//! messages to a real local receiver, signed, retried on the configured
//! schedule, and dead after the last attempt — also when its attempts cannot
//! be recorded.

use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{Backend, Herald, Options};
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
    wait_for_state_within(herald, msg_id, state, Duration::from_secs(15)).await
}

/// Polls the delivery of `msg_id` until it is in `state` (at most `limit`);
/// the last `(state, attempts)` seen.
async fn wait_for_state_within(
    herald: &Herald,
    msg_id: &str,
    state: &str,
    limit: Duration,
) -> (String, i32) {
    let deadline = Instant::now() + limit;
    loop {
        let current = delivery_state(herald, msg_id).await;
        if current.0 == state || Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes the database refuse every attempt record, as a write can fail for
/// reasons the worker cannot foresee: a trigger of the test's own on
/// `message_attempt` that raises an error.
async fn refuse_attempt_records(herald: &Herald) {
    let mut conn = herald.db().await;
    let statements: &[&str] = match Backend::current() {
        Backend::Services => &[
            "CREATE FUNCTION refuse_attempt_records() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'attempt records refused by the test'; END $$",
            "CREATE TRIGGER refuse_attempt_records BEFORE INSERT ON message_attempt \
             FOR EACH ROW EXECUTE FUNCTION refuse_attempt_records()",
        ],
        Backend::Embedded => &[
            "CREATE TRIGGER refuse_attempt_records BEFORE INSERT ON message_attempt \
             BEGIN SELECT RAISE(ABORT, 'attempt records refused by the test'); END",
        ],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
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
        assert_eq!(request.header("webhook-id"), msg_id);
        assert_eq!(request.header("svix-id"), msg_id);
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request.header("user-agent").starts_with("Herald/"));
        assert!(request.signed_by(&secret), "signature verifies: {request:?}");
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

herald_e2e::e2e_tests! {
    async fn an_attempt_that_cannot_be_recorded_backs_off_and_ends_dead() {
        // Schedule "1,1,4": four attempts allowed; unrecorded ones back off
        // from the first delay, doubling up to the longest: 1, 2 and 4 s.
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![("HERALD_RETRY_SCHEDULE".into(), "1,1,4".into())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        refuse_attempt_records(&herald).await;
        let receiver = Receiver::start().await;
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let endpoint = herald
            .post("/api/v1/app/a/endpoint", json!({"url": receiver.url("ok")}))
            .await;
        assert_eq!(endpoint.status, 201, "{endpoint:?}");
        let created = herald
            .post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {}}))
            .await;
        assert_eq!(created.status, 202, "{created:?}");
        let msg_id = created.body["id"].as_str().unwrap().to_owned();

        assert_eq!(
            wait_for_state_within(&herald, &msg_id, "dead", Duration::from_secs(60)).await,
            ("dead".into(), 0),
            "dead with no attempt recorded; server log:\n{}",
            herald.log()
        );
        // Past the last backoff nothing more comes: no loop.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent = receiver.received("ok");
        assert_eq!(
            sent.len(),
            4,
            "as many requests as the schedule allows attempts; server log:\n{}",
            herald.log()
        );
        // Each wait is at least its backoff less the 20% jitter, so the waits
        // grow: the last is longer than the first could be.
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
        for (gap, backoff) in gaps.iter().zip([1, 2, 4]) {
            assert!(
                *gap >= Duration::from_secs(backoff).mul_f64(0.8) - Duration::from_millis(10),
                "sent again too early: gaps {gaps:?}"
            );
        }
        eprintln!("unrecordable attempts: gaps between requests {gaps:?}");

        let series = "herald_attempt_record_failures_total";
        assert_eq!(herald.metric(&format!("{series}{{action=\"retry\"}}")).await, 3.0);
        assert_eq!(herald.metric(&format!("{series}{{action=\"dead\"}}")).await, 1.0);
        assert_eq!(herald.metric("herald_dead_letters_total").await, 1.0);
        let log = herald.log();
        assert!(
            log.lines().any(|line| line.contains("the delivery is dead") && line.contains(&msg_id)),
            "the give-up is logged with the message id; server log:\n{log}"
        );
    }
}

herald_e2e::e2e_tests! {
    /// The worker keeps endpoints in a cache (`HERALD_ENDPOINT_CACHE_TTL`),
    /// but a task carries the endpoint's version as the API saw it: a change
    /// made before a message is posted applies to that message, however
    /// freshly the worker cached the endpoint.
    async fn an_endpoint_changed_just_before_a_message_is_posted_applies_to_it() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ep = herald
            .post("/api/v1/app/a/endpoint", json!({"url": receiver.url("ep")}))
            .await;
        assert_eq!(ep.status, 201, "{ep:?}");
        let ep = format!("/api/v1/app/a/endpoint/{}", ep.body["id"].as_str().unwrap());
        let post = |n: u32| {
            let herald = &herald;
            async move {
                let created = herald
                    .post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {"n": n}}))
                    .await;
                assert_eq!(created.status, 202, "{created:?}");
            }
        };
        // The first delivery puts the endpoint in the worker's cache.
        post(1).await;
        let got = receiver.wait_for("ep", 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "not delivered; server log:\n{}", herald.log());

        // Within the cache's lifetime: new headers and a rotated secret.
        let replaced = herald
            .request(
                reqwest::Method::PUT,
                &format!("{ep}/headers"),
                Some(&herald.tenant.key),
                Some(json!({"headers": {"x-version": "2"}})),
            )
            .await;
        assert!(replaced.status.is_success(), "{replaced:?}");
        let rotated = herald
            .post(&format!("{ep}/secret/rotate"), json!({}))
            .await;
        assert!(rotated.status.is_success(), "{rotated:?}");
        let secret = herald.get(&format!("{ep}/secret")).await.body["key"]
            .as_str()
            .unwrap()
            .to_owned();
        post(2).await;

        let got = receiver.wait_for("ep", 2, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 2, "not delivered; server log:\n{}", herald.log());
        let second = &got[1];
        assert_eq!(second.header("x-version"), "2", "the new headers: {second:?}");
        assert!(second.signed_by(&secret), "signed with the new secret too: {second:?}");
    }
}

herald_e2e::e2e_tests! {
    /// The worker signs with each endpoint's own scheme; an `ed25519`
    /// endpoint's deliveries verify with the public key the API shows, and keep
    /// verifying with the old key through a rotation and a change of key kind.
    async fn deliveries_are_signed_with_the_endpoint_s_scheme_through_rotations() {
        use herald_signature::{SignatureError, SignatureScheme};
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let mut endpoints = Vec::new();
        for (path, scheme) in [("std", "standard"), ("ed", "ed25519"), ("stripe", "stripe")] {
            let ep = herald
                .post(
                    "/api/v1/app/a/endpoint",
                    json!({"url": receiver.url(path), "signatureScheme": scheme}),
                )
                .await;
            assert_eq!(ep.status, 201, "{ep:?}");
            let ep = format!("/api/v1/app/a/endpoint/{}", ep.body["id"].as_str().unwrap());
            let key = herald.get(&format!("{ep}/secret")).await.body["key"]
                .as_str()
                .unwrap()
                .to_owned();
            endpoints.push((path, ep, key));
        }
        let post = |n: u32| {
            let herald = &herald;
            async move {
                let created = herald
                    .post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {"n": n}}))
                    .await;
                assert_eq!(created.status, 202, "{created:?}");
            }
        };
        post(1).await;
        for (path, _, _) in &endpoints {
            let got = receiver.wait_for(path, 1, Duration::from_secs(20)).await;
            assert_eq!(got.len(), 1, "{path} not delivered; server log:\n{}", herald.log());
        }
        let first = |path: &str| receiver.received(path).remove(0);
        let (_, ed, ed_key) = &endpoints[1];
        let (_, std_ep, std_key) = &endpoints[0];
        let delivered = first("ed");
        assert!(delivered.header("webhook-signature").starts_with("v1a,"), "{delivered:?}");
        assert_eq!(delivered.verify(&SignatureScheme::Ed25519, ed_key), Ok(()));
        assert_eq!(
            delivered.verify(&SignatureScheme::Ed25519, std_key),
            Err(SignatureError::UnsuitableKey)
        );
        let stripe = first("stripe");
        assert!(stripe.header("stripe-signature").starts_with("t="), "{stripe:?}");
        assert_eq!(stripe.header("webhook-signature"), "", "only the scheme's own signature");
        assert_eq!(stripe.verify(&SignatureScheme::Stripe, &endpoints[2].2), Ok(()));
        assert!(first("std").signed_by(std_key));

        // Rotate the key pair, and move the standard endpoint to ed25519.
        let rotated = herald.post(&format!("{ed}/secret/rotate"), json!({})).await;
        assert_eq!(rotated.status, 200, "{rotated:?}");
        let new_ed_key = rotated.body["key"].as_str().unwrap().to_owned();
        let moved = herald
            .patch(std_ep, json!({"signatureScheme": "ed25519"}))
            .await;
        assert_eq!(moved.status, 200, "{moved:?}");
        let moved_key = herald.get(&format!("{std_ep}/secret")).await.body["key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(moved_key.starts_with("whpk_"), "{moved_key}");
        post(2).await;
        for path in ["ed", "std"] {
            let got = receiver.wait_for(path, 2, Duration::from_secs(20)).await;
            assert_eq!(got.len(), 2, "{path} not delivered; server log:\n{}", herald.log());
        }
        let second = &receiver.received("ed")[1];
        for key in [ed_key, &new_ed_key] {
            assert_eq!(second.verify(&SignatureScheme::Ed25519, key), Ok(()), "{second:?}");
        }
        // The moved endpoint's receivers verify with either key during the grace period.
        let second = &receiver.received("std")[1];
        let signature = second.header("webhook-signature");
        assert!(signature.starts_with("v1a,") && signature.contains(" v1,"), "{signature}");
        assert!(second.signed_by(std_key) && second.signed_by(&moved_key), "{second:?}");
    }
}
