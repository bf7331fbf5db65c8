//! Messages over HTTP: 202 with the payload kept byte for byte, one pending
//! delivery per matching endpoint (the outbox), eventId lookups and conflicts,
//! listing filters, and content expunging.

use herald_e2e::Herald;
use reqwest::Method;
use serde_json::{json, Value};

async fn delivery_targets(herald: &Herald, msg_id: &str) -> Vec<String> {
    let mut conn = herald.db().await;
    sqlx::query_scalar(
        "SELECT endpoint_id FROM delivery WHERE msg_id = $1 AND state = 'pending' ORDER BY endpoint_id",
    )
    .bind(msg_id)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn endpoint(herald: &Herald, app: &str, body: Value) -> String {
    let reply = herald
        .post(&format!("/api/v1/app/{app}/endpoint"), body)
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

herald_e2e::e2e_tests! {
    async fn messages_fan_out_to_exactly_the_matching_endpoints() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        for name in ["invoice.paid", "user.signup"] {
            herald
                .post(
                    "/api/v1/event-type",
                    json!({"name": name, "description": name}),
                )
                .await;
        }
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let all = endpoint(&herald, "a", json!({"url": "https://example.com/all"})).await;
        let invoices = endpoint(
            &herald,
            "a",
            json!({"url": "https://example.com/inv", "eventTypes": ["invoice.paid"]}),
        )
        .await;
        let project = endpoint(
            &herald,
            "a",
            json!({"url": "https://example.com/p", "channels": ["project_1"]}),
        )
        .await;
        let _disabled = endpoint(
            &herald,
            "a",
            json!({"url": "https://example.com/off", "disabled": true}),
        )
        .await;

        let on_channel = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "invoice.paid", "payload": {"n": 1}, "channels": ["project_1"]}),
            )
            .await;
        assert_eq!(on_channel.status, 202, "{on_channel:?}");
        let mut expected = vec![all.clone(), invoices.clone(), project.clone()];
        expected.sort();
        assert_eq!(
            delivery_targets(&herald, on_channel.body["id"].as_str().unwrap()).await,
            expected
        );

        let other_type = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "user.signup", "payload": {}, "channels": ["elsewhere"]}),
            )
            .await;
        assert_eq!(
            delivery_targets(&herald, other_type.body["id"].as_str().unwrap()).await,
            vec![all.clone()]
        );

        let no_channel = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "invoice.paid", "payload": {}}),
            )
            .await;
        let mut expected = vec![all, invoices];
        expected.sort();
        assert_eq!(
            delivery_targets(&herald, no_channel.body["id"].as_str().unwrap()).await,
            expected
        );
    }
}

herald_e2e::e2e_tests! {
    async fn payloads_are_kept_byte_for_byte_and_can_be_expunged() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let payload = r#"{ "z": 1,  "a": [1, 2.50, "\u00e9"], "nested": {"y": null} }"#;
        let body = format!(r#"{{"eventType": "raw.test", "eventId": "evt-1", "payload": {payload}}}"#);
        let created = herald
            .request_raw(
                Method::POST,
                "/api/v1/app/a/msg",
                Some(&herald.tenant.key),
                "application/json",
                body.into_bytes(),
            )
            .await;
        assert_eq!(created.status, 202, "{created:?}");
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("msg_"));

        // The stored bytes and the served payload are the client's exact text.
        let mut conn = herald.db().await;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT payload FROM message WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, payload.as_bytes());
        let raw = herald
            .http
            .get(format!("{}/api/v1/app/a/msg/evt-1", herald.url))
            .bearer_auth(&herald.tenant.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(raw.contains(payload), "{raw}");

        let without = herald
            .get(&format!("/api/v1/app/a/msg/{id}?with_content=false"))
            .await;
        assert_eq!(without.body["payload"], json!({}));
        assert_eq!(without.body["eventId"], "evt-1");

        assert_eq!(
            herald
                .delete(&format!("/api/v1/app/a/msg/{id}/content"))
                .await
                .status,
            204
        );
        let expunged = herald.get(&format!("/api/v1/app/a/msg/{id}")).await;
        assert_eq!(expunged.status, 200);
        assert_eq!(expunged.body["payload"], json!({"expired": true}));
    }
}

herald_e2e::e2e_tests! {
    async fn bad_messages_are_refused_and_store_nothing() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ok = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "t", "eventId": "dup", "payload": {}}),
            )
            .await;
        assert_eq!(ok.status, 202);
        let other = herald.create_tenant("other").await;
        let cases: Vec<(&str, Value, u16)> = vec![
            (
                "duplicate eventId",
                json!({"eventType": "t", "eventId": "dup", "payload": {}}),
                409,
            ),
            (
                "array payload",
                json!({"eventType": "t", "payload": [1]}),
                422,
            ),
            (
                "string payload",
                json!({"eventType": "t", "payload": "x"}),
                422,
            ),
            ("missing payload", json!({"eventType": "t"}), 422),
            ("missing eventType", json!({"payload": {}}), 422),
            (
                "bad eventType",
                json!({"eventType": "a b", "payload": {}}),
                422,
            ),
            (
                "six channels",
                json!({"eventType": "t", "payload": {}, "channels": ["a","b","c","d","e","f"]}),
                422,
            ),
            (
                "retention too long",
                json!({"eventType": "t", "payload": {}, "payloadRetentionPeriod": 91}),
                422,
            ),
            (
                "deliverAt",
                json!({"eventType": "t", "payload": {}, "deliverAt": "2030-01-01T00:00:00Z"}),
                422,
            ),
        ];
        for (name, body, status) in cases {
            let reply = herald.post("/api/v1/app/a/msg", body).await;
            assert_eq!(reply.status.as_u16(), status, "{name}: {reply:?}");
        }
        assert_eq!(
            herald
                .post(
                    "/api/v1/app/nope/msg",
                    json!({"eventType": "t", "payload": {}})
                )
                .await
                .status,
            404
        );
        let foreign = herald
            .request(
                Method::POST,
                "/api/v1/app/a/msg",
                Some(&other.key),
                Some(json!({"eventType": "t", "payload": {}})),
            )
            .await;
        assert_eq!(foreign.status, 404);
        let nul_app = herald
            .post(
                "/api/v1/app/nul-app/msg",
                json!({"eventType": "t", "payload": {}, "application": {"name": "a\0b"}}),
            )
            .await;
        assert_eq!(nul_app.status, 422, "{nul_app:?}");
        assert_eq!(
            nul_app.body["detail"][0]["loc"],
            json!(["body", "application", "name"])
        );
        let malformed = herald
            .request_raw(
                Method::POST,
                "/api/v1/app/a/msg",
                Some(&herald.tenant.key),
                "application/json",
                br#"{"eventType": "t", "payload": {"#.to_vec(),
            )
            .await;
        assert_eq!(malformed.status, 400, "{malformed:?}");
        assert_eq!(malformed.body["code"], "invalid_json");
        assert_eq!(herald.count_rows("application").await, 1);
        assert_eq!(herald.count_rows("message").await, 1);

        // An inline application is created on the fly for a new uid.
        let inline = herald
            .post(
                "/api/v1/app/fresh/msg",
                json!({"eventType": "t", "payload": {}, "application": {"name": "Fresh"}}),
            )
            .await;
        assert_eq!(inline.status, 202, "{inline:?}");
        assert_eq!(herald.get("/api/v1/app/fresh").await.body["name"], "Fresh");
    }
}

herald_e2e::e2e_tests! {
    async fn message_listing_filters_by_channel_type_and_time() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let mut ids = Vec::new();
        for (event_type, channel) in [
            ("a.one", "c1"),
            ("b.two", "c2"),
            ("a.one", "c2"),
            ("c.three", "c1"),
        ] {
            let reply = herald
                .post(
                    "/api/v1/app/a/msg",
                    json!({"eventType": event_type, "payload": {"t": event_type}, "channels": [channel]}),
                )
                .await;
            ids.push(reply.body["id"].as_str().unwrap().to_owned());
        }
        let ids_of = |body: &Value| -> Vec<String> {
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let all = herald.get("/api/v1/app/a/msg").await;
        assert_eq!(all.status, 200);
        let mut newest_first = ids.clone();
        newest_first.sort();
        newest_first.reverse();
        assert_eq!(ids_of(&all.body), newest_first);

        let c1 = herald.get("/api/v1/app/a/msg?channel=c1").await;
        assert_eq!(ids_of(&c1.body).len(), 2);
        let typed = herald.get("/api/v1/app/a/msg?event_types=a.one").await;
        assert_eq!(ids_of(&typed.body).len(), 2);
        let two_types = herald
            .get("/api/v1/app/a/msg?event_types=a.one,c.three")
            .await;
        assert_eq!(ids_of(&two_types.body).len(), 3);
        let repeated = herald
            .get("/api/v1/app/a/msg?event_types=b.two&event_types=c.three")
            .await;
        assert_eq!(ids_of(&repeated.body).len(), 2);
        let future = herald
            .get("/api/v1/app/a/msg?after=2100-01-01T00:00:00Z")
            .await;
        assert_eq!(ids_of(&future.body).len(), 0);
        let past = herald
            .get("/api/v1/app/a/msg?before=2100-01-01T00:00:00Z")
            .await;
        assert_eq!(ids_of(&past.body).len(), 4);
        let garbage = herald.get("/api/v1/app/a/msg?before=yesterday").await;
        assert_eq!(garbage.status, 422);
        let no_content = herald.get("/api/v1/app/a/msg?with_content=false").await;
        assert_eq!(no_content.body["data"][0]["payload"], json!({}));
    }
}

herald_e2e::e2e_tests! {
    async fn the_message_log_filters_by_delivery_status() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app = herald.post("/api/v1/app", json!({"name": "log", "uid": "log"})).await;
        assert_eq!(app.status, 201, "{app:?}");
        for name in ["fanned", "unmatched"] {
            let reply = herald.post("/api/v1/event-type", json!({"name": name, "description": name})).await;
            assert_eq!(reply.status, 201, "{reply:?}");
        }
        endpoint(&herald, "log", json!({"url": "https://example.com/a", "filterTypes": ["fanned"]})).await;
        let post = |event_type: &'static str| {
            let herald = &herald;
            async move {
                let reply = herald
                    .post("/api/v1/app/log/msg", json!({"eventType": event_type, "payload": {}}))
                    .await;
                assert_eq!(reply.status, 202, "{reply:?}");
                reply.body["id"].as_str().unwrap().to_owned()
            }
        };
        // No worker runs: the fanned-out message's delivery stays pending; the
        // other matches no endpoint and has no delivery at all.
        let fanned = post("fanned").await;
        post("unmatched").await;
        let listed = |query: &'static str| {
            let herald = &herald;
            async move {
                let reply = herald.get(&format!("/api/v1/app/log/msg?{query}")).await;
                assert_eq!(reply.status, 200, "{query}: {reply:?}");
                reply.body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(listed("status=1").await, vec![fanned.clone()]);
        assert_eq!(listed("status=1&event_types=unmatched").await, Vec::<String>::new());
        for status in ["0", "2", "3"] {
            let query = format!("status={status}");
            let reply = herald.get(&format!("/api/v1/app/log/msg?{query}")).await;
            assert_eq!(reply.body["data"], json!([]), "{query}");
        }
        assert_eq!(listed("").await.len(), 2);
        let bad = herald.get("/api/v1/app/log/msg?status=7").await;
        assert_eq!(bad.status, 422, "{bad:?}");
        assert_eq!(bad.body["detail"][0]["loc"], json!(["query", "status"]));
    }
}
