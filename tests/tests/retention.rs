//! Retention end to end, in both topologies, with test-shortened periods:
//! payloads expire and read as expired through the API and the official Svix
//! SDK, old messages go with their attempts and deliveries, and nothing
//! unexpired or still in flight is touched.

mod common;

use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options};
use serde_json::{json, Value};

/// Seconds a payload is kept by default, and a message at all.
const PAYLOAD_RETENTION: u64 = 2;
const RETENTION: u64 = 20;

async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        env: vec![
            (
                "HERALD_PAYLOAD_RETENTION".into(),
                PAYLOAD_RETENTION.to_string(),
            ),
            ("HERALD_RETENTION".into(), RETENTION.to_string()),
            ("HERALD_RETENTION_INTERVAL".into(), "1".into()),
            // A failed delivery waits an hour for its retry: in flight
            // throughout the test.
            ("HERALD_RETRY_SCHEDULE".into(), "3600".into()),
        ],
        ..Options::default()
    })
    .await
}

async fn post(herald: &Herald, app: &str, body: Value) -> String {
    let created = herald.post(&format!("/api/v1/app/{app}/msg"), body).await;
    assert_eq!(created.status, 202, "{created:?}");
    created.body["id"].as_str().unwrap().to_owned()
}

/// The message's payload as `GET …/msg/{id}` reports it; `None` once the
/// message is gone (404).
async fn payload(herald: &Herald, app: &str, msg: &str) -> Option<Value> {
    let reply = herald.get(&format!("/api/v1/app/{app}/msg/{msg}")).await;
    match reply.status.as_u16() {
        200 => Some(reply.body["payload"].clone()),
        404 => None,
        _ => panic!("{reply:?}"),
    }
}

async fn attempts_of(herald: &Herald, msg: &str) -> i64 {
    let mut db = common::db(herald).await;
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM message_attempt WHERE msg_id = $1")
        .bind(msg)
        .fetch_one(&mut db)
        .await
        .unwrap();
    count
}

herald_e2e::e2e_tests! {
    async fn payloads_expire_and_old_messages_go_but_nothing_unexpired_or_in_flight() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("down", &[500]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        herald.post("/api/v1/app", json!({"name": "B", "uid": "b"})).await;
        for (app, path) in [("a", "up"), ("b", "down")] {
            let ep = herald
                .post(
                    &format!("/api/v1/app/{app}/endpoint"),
                    json!({"url": receiver.url(path)}),
                )
                .await;
            assert_eq!(ep.status, 201, "{ep:?}");
        }

        // The server's default payload retention; a message's own, longer
        // one; and a message whose delivery fails and waits for its retry.
        let started = Instant::now();
        let expiring = post(&herald, "a", json!({"eventType": "e", "payload": {"gone": 1}})).await;
        let kept = post(
            &herald,
            "a",
            json!({"eventType": "e", "payload": {"kept": true}, "payloadRetentionHours": 1}),
        )
        .await;
        let in_flight = post(&herald, "b", json!({"eventType": "e", "payload": {"late": 1}})).await;

        let expired = common::poll(Duration::from_secs(30), || async {
            let payload = payload(&herald, "a", &expiring).await?;
            (payload == json!({"expired": true})).then_some(())
        })
        .await;
        assert!(
            expired.is_some(),
            "payload never expired\nserver log:\n{}",
            herald.log()
        );
        assert!(started.elapsed() >= Duration::from_secs(PAYLOAD_RETENTION));
        // Delivered before it expired; the attempt stays.
        let both = common::poll(Duration::from_secs(10), || async {
            (receiver.received("up").len() == 2).then_some(())
        })
        .await;
        assert!(both.is_some(), "{:?}", receiver.received("up"));
        assert_eq!(attempts_of(&herald, &expiring).await, 1);
        assert_eq!(payload(&herald, "a", &kept).await, Some(json!({"kept": true})));
        // In flight: its payload is kept for the retry.
        assert_eq!(payload(&herald, "b", &in_flight).await, Some(json!({"late": 1})));
        let listed = herald.get("/api/v1/app/a/msg?with_content=true").await;
        let by_id = |id: &str| {
            listed.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == id)
                .map(|m| m["payload"].clone())
        };
        assert_eq!(by_id(&expiring), Some(json!({"expired": true})), "{listed:?}");
        assert_eq!(by_id(&kept), Some(json!({"kept": true})), "{listed:?}");
        // An expired payload cannot be sent again.
        let endpoints = herald.get("/api/v1/app/a/endpoint").await;
        let ep = endpoints.body["data"][0]["id"].as_str().unwrap().to_owned();
        let resend = herald
            .post(&format!("/api/v1/app/a/msg/{expiring}/endpoint/{ep}/resend"), json!({}))
            .await;
        assert_eq!(resend.status, 400, "{resend:?}");

        // The official SDK reads both.
        common::run_script(
            &herald,
            "svix_retention.py",
            "svix retention: ok",
            &[
                ("HERALD_APP", "a"),
                ("HERALD_EXPIRED_MSG", &expiring),
                ("HERALD_KEPT_MSG", &kept),
            ],
        )
        .await;

        // Past the retention, the first messages go with their attempts and
        // deliveries; one posted later stays while it is younger than it.
        let young_at = Instant::now();
        let young = post(
            &herald,
            "a",
            json!({"eventType": "e", "payload": {"young": 1}, "payloadRetentionHours": 1}),
        )
        .await;
        let gone = common::poll(Duration::from_secs(RETENTION + 30), || async {
            let expiring_gone = payload(&herald, "a", &expiring).await.is_none();
            let kept_gone = payload(&herald, "a", &kept).await.is_none();
            (expiring_gone && kept_gone).then_some(())
        })
        .await;
        let young_age = young_at.elapsed();
        assert!(gone.is_some(), "old messages were never pruned\nserver log:\n{}", herald.log());
        assert!(started.elapsed() >= Duration::from_secs(RETENTION));
        assert_eq!(attempts_of(&herald, &expiring).await, 0);
        assert_eq!(attempts_of(&herald, &kept).await, 0);
        let mut db = common::db(&herald).await;
        let (deliveries,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM delivery WHERE msg_id = $1 OR msg_id = $2")
                .bind(&expiring)
                .bind(&kept)
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert_eq!(deliveries, 0);
        if young_age < Duration::from_secs(RETENTION - 1) {
            assert_eq!(payload(&herald, "a", &young).await, Some(json!({"young": 1})));
        }
        // Older than the retention but in flight: kept, payload and all.
        assert_eq!(payload(&herald, "b", &in_flight).await, Some(json!({"late": 1})));
        assert_eq!(attempts_of(&herald, &in_flight).await, 1);
        assert!(herald.metric("herald_retention_pruned_total{kind=\"message\"}").await >= 2.0);
        assert!(herald.metric("herald_retention_pruned_total{kind=\"payload\"}").await >= 1.0);
    }
}
