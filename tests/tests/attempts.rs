//! The attempt log through the Svix message-attempt routes, against real
//! deliveries: listings and their filters, one attempt, expunging a response,
//! resend, recover, send-example and the endpoint's delivery counts.

use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options};
use reqwest::Method;
use serde_json::{json, Value};

async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        ..Options::default()
    })
    .await
}

/// Polls `path` until `done` holds for its body, for at most 20 s.
async fn eventually(herald: &Herald, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let reply = herald.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        if done(&reply.body) {
            return reply.body;
        }
        last = reply.body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "GET {path} never got there; last answer: {last}\nserver log:\n{}",
        herald.log()
    );
}

fn data_len(body: &Value) -> usize {
    body["data"].as_array().map_or(0, Vec::len)
}

async fn endpoint(herald: &Herald, url: String, extra: Value) -> String {
    let mut body = json!({ "url": url });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = herald.post("/api/v1/app/a/endpoint", body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn message(herald: &Herald, body: Value) -> String {
    let reply = herald.post("/api/v1/app/a/msg", body).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

herald_e2e::e2e_tests! {
    async fn attempts_are_listed_filtered_and_expunged() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("flaky", &[500, 503, 200]);
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ep = endpoint(&herald, receiver.url("flaky"), json!({"uid": "flaky"})).await;
        let other = endpoint(&herald, receiver.url("other"), json!({"channels": ["x"]})).await;
        let msg = message(
            &herald,
            json!({"eventType": "invoice.paid", "eventId": "evt-1", "payload": {"n": 1}}),
        )
        .await;

        // Three attempts, newest first: success, then the two failures.
        let by_msg = format!("/api/v1/app/a/attempt/msg/{msg}");
        let body = eventually(&herald, &by_msg, |b| data_len(b) == 3).await;
        let attempts = body["data"].as_array().unwrap();
        let statuses: Vec<_> = attempts.iter().map(|a| a["status"].clone()).collect();
        assert_eq!(statuses, vec![json!(0), json!(2), json!(2)], "{body}");
        let codes: Vec<_> = attempts
            .iter()
            .map(|a| a["responseStatusCode"].clone())
            .collect();
        assert_eq!(codes, vec![json!(200), json!(503), json!(500)]);
        for attempt in attempts {
            assert_eq!(attempt["msgId"], json!(msg));
            assert_eq!(attempt["endpointId"], json!(ep));
            assert_eq!(attempt["url"], json!(receiver.url("flaky")));
            assert_eq!(attempt["triggerType"], json!(0));
            assert!(attempt["id"].as_str().unwrap().starts_with("atmpt_"));
            assert!(attempt["responseDurationMs"].is_u64());
            assert!(attempt["timestamp"].is_string());
        }
        assert_eq!(attempts[0]["statusText"], json!("success"));
        assert_eq!(attempts[1]["statusText"], json!("fail"));
        assert_eq!(attempts[1]["errorClass"], json!("5xx"));

        // Filters: status, status code class, endpoint, event types, channel, time.
        let count = |query: String| {
            let herald = &herald;
            async move { data_len(&herald.get(&query).await.body) }
        };
        assert_eq!(count(format!("{by_msg}?status=0")).await, 1);
        assert_eq!(count(format!("{by_msg}?status=2")).await, 2);
        assert_eq!(count(format!("{by_msg}?status=1")).await, 0);
        assert_eq!(count(format!("{by_msg}?status_code_class=500")).await, 2);
        assert_eq!(count(format!("{by_msg}?status_code_class=200")).await, 1);
        assert_eq!(count(format!("{by_msg}?status_code_class=400")).await, 0);
        assert_eq!(count(format!("{by_msg}?endpoint_id=flaky")).await, 3);
        assert_eq!(count(format!("{by_msg}?endpoint_id={other}")).await, 0);
        assert_eq!(count(format!("{by_msg}?event_types=invoice.paid")).await, 3);
        assert_eq!(count(format!("{by_msg}?event_types=user.created")).await, 0);
        assert_eq!(count(format!("{by_msg}?channel=x")).await, 0);
        assert_eq!(
            count(format!("{by_msg}?before=2000-01-01T00:00:00Z")).await,
            0
        );
        assert_eq!(
            count(format!("{by_msg}?after=2000-01-01T00:00:00Z")).await,
            3
        );
        // The message can be named by its eventId, the endpoint by its uid.
        assert_eq!(count("/api/v1/app/a/attempt/msg/evt-1".into()).await, 3);
        assert_eq!(
            count("/api/v1/app/a/attempt/endpoint/flaky?status=2".into()).await,
            2
        );
        assert_eq!(
            count(format!("/api/v1/app/a/attempt/endpoint/{other}")).await,
            0
        );

        // Pagination walks all attempts once.
        let first = herald.get(&format!("{by_msg}?limit=2")).await.body;
        assert_eq!(data_len(&first), 2);
        assert_eq!(first["done"], json!(false));
        let next = herald
            .get(&format!(
                "{by_msg}?limit=2&iterator={}",
                first["iterator"].as_str().unwrap()
            ))
            .await
            .body;
        assert_eq!(data_len(&next), 1);
        assert_eq!(next["done"], json!(true));

        // The endpoint's messages and the message's endpoints carry the status.
        let messages = herald
            .get(&format!("/api/v1/app/a/endpoint/{ep}/msg"))
            .await
            .body;
        assert_eq!(data_len(&messages), 1, "{messages}");
        assert_eq!(messages["data"][0]["id"], json!(msg));
        assert_eq!(messages["data"][0]["status"], json!(0));
        assert_eq!(messages["data"][0]["statusText"], json!("success"));
        assert_eq!(messages["data"][0]["payload"], json!({"n": 1}));
        assert_eq!(messages["data"][0]["nextAttempt"], Value::Null);
        let failed_only = herald
            .get(&format!("/api/v1/app/a/endpoint/{ep}/msg?status=2"))
            .await
            .body;
        assert_eq!(data_len(&failed_only), 0);
        let destinations = herald
            .get(&format!("/api/v1/app/a/msg/{msg}/endpoint"))
            .await
            .body;
        assert_eq!(data_len(&destinations), 1, "{destinations}");
        assert_eq!(destinations["data"][0]["id"], json!(ep));
        assert_eq!(destinations["data"][0]["url"], json!(receiver.url("flaky")));
        assert_eq!(destinations["data"][0]["status"], json!(0));

        // One attempt, and its response body expunged.
        let attempt_id = attempts[1]["id"].as_str().unwrap();
        let one = format!("/api/v1/app/a/msg/{msg}/attempt/{attempt_id}");
        let got = herald.get(&one).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["id"], json!(attempt_id));
        assert_eq!(got.body["responseStatusCode"], json!(503));
        let expunged = herald.delete(&format!("{one}/content")).await;
        assert_eq!(expunged.status, 204, "{expunged:?}");
        assert_eq!(herald.get(&one).await.body["response"], json!(""));
        assert_eq!(
            herald.get(&format!("{one}x")).await.status,
            404,
            "a malformed attempt id is not found"
        );
        // Stats count deliveries by status.
        let stats = herald
            .get(&format!("/api/v1/app/a/endpoint/{ep}/stats"))
            .await
            .body;
        assert_eq!(stats["success"], json!(1), "{stats}");
        assert_eq!(stats["fail"], json!(0));
        assert_eq!(stats["canceled"], json!(0));

        // On channel x: it goes to `other` (and to `flaky`, which takes every
        // channel), so it is another message's attempt list.
        let other_msg = message(
            &herald,
            json!({"eventType": "t", "payload": {}, "channels": ["x"]}),
        )
        .await;
        assert_eq!(
            herald
                .get(&format!(
                    "/api/v1/app/a/msg/{other_msg}/attempt/{attempt_id}"
                ))
                .await
                .status,
            404,
            "an attempt is found only under its own message"
        );

    }
}

herald_e2e::e2e_tests! {
    async fn resend_and_recover_make_manual_attempts() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
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
        let ok = endpoint(&herald, receiver.url("ok"), json!({"channels": ["ok"]})).await;
        let down = endpoint(&herald, receiver.url("down"), json!({"channels": ["down"]})).await;
        let delivered = message(
            &herald,
            json!({"eventType": "t", "payload": {"k": "ok"}, "channels": ["ok"]}),
        )
        .await;
        let failing: Vec<String> = futures::future::join_all((0..3).map(|i| {
            message(
                &herald,
                json!({"eventType": "t", "payload": {"k": i}, "channels": ["down"]}),
            )
        }))
        .await;

        // Schedule "1": two attempts each, then dead and listed as failed.
        let failed = format!("/api/v1/app/a/endpoint/{down}/msg?status=2");
        eventually(&herald, &failed, |b| data_len(b) == 3).await;
        assert_eq!(receiver.received("down").len(), 6);
        let stats = herald
            .get(&format!("/api/v1/app/a/endpoint/{down}/stats"))
            .await
            .body;
        assert_eq!(stats["fail"], json!(3), "{stats}");

        // Resend a delivered message: one more request, recorded as manual.
        receiver.wait_for("ok", 1, Duration::from_secs(20)).await;
        let resent = herald
            .request(
                Method::POST,
                &format!("/api/v1/app/a/msg/{delivered}/endpoint/{ok}/resend"),
                Some(&herald.tenant.key),
                None,
            )
            .await;
        assert_eq!(resent.status, 202, "{resent:?}");
        assert_eq!(resent.body, json!({}));
        assert_eq!(
            receiver
                .wait_for("ok", 2, Duration::from_secs(20))
                .await
                .len(),
            2
        );
        let attempts = eventually(
            &herald,
            &format!("/api/v1/app/a/attempt/msg/{delivered}"),
            |b| data_len(b) == 2,
        )
        .await;
        assert_eq!(attempts["data"][0]["triggerType"], json!(1), "{attempts}");
        assert_eq!(attempts["data"][1]["triggerType"], json!(0));

        // Resend to an endpoint the message never went to: it goes there now.
        let replayed = herald
            .request(
                Method::POST,
                &format!("/api/v1/app/a/msg/{delivered}/endpoint/{down}/resend"),
                Some(&herald.tenant.key),
                None,
            )
            .await;
        assert_eq!(replayed.status, 202);
        let down_requests = receiver.wait_for("down", 7, Duration::from_secs(20)).await;
        assert_eq!(&down_requests[6].body[..], br#"{"k":"ok"}"#);
        // A failed manual attempt past the schedule is not retried: it ends failed.
        eventually(&herald, &failed, |b| data_len(b) == 4).await;

        // The receiver is fixed; recover re-sends the three failed messages once.
        receiver.script("down", &[200]);
        let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let recovered = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{down}/recover"),
                json!({ "since": since }),
            )
            .await;
        assert_eq!(recovered.status, 202, "{recovered:?}");
        assert_eq!(recovered.body["status"], json!("running"));
        assert_eq!(recovered.body["task"], json!("endpoint.recover"));
        assert!(recovered.body["id"].as_str().unwrap().starts_with("qtask_"));
        assert_eq!(
            recovered.body["recovered"],
            json!(4),
            "three dead deliveries and the failed replay"
        );
        eventually(
            &herald,
            &format!("/api/v1/app/a/endpoint/{down}/msg?status=0"),
            |b| data_len(b) == 4,
        )
        .await;
        for msg in &failing {
            let attempts = herald
                .get(&format!("/api/v1/app/a/attempt/msg/{msg}?status=0"))
                .await
                .body;
            assert_eq!(data_len(&attempts), 1, "{attempts}");
            assert_eq!(attempts["data"][0]["triggerType"], json!(1));
        }
        // Nothing failed is left, so a second recovery has nothing to do.
        let again = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{down}/recover"),
                json!({ "since": since }),
            )
            .await;
        assert_eq!(again.body["recovered"], json!(0));

        // A message whose payload was expunged cannot be resent.
        let expunged = herald
            .delete(&format!("/api/v1/app/a/msg/{delivered}/content"))
            .await;
        assert_eq!(expunged.status, 204);
        let refused = herald
            .request(
                Method::POST,
                &format!("/api/v1/app/a/msg/{delivered}/endpoint/{ok}/resend"),
                Some(&herald.tenant.key),
                None,
            )
            .await;
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(refused.body["code"], json!("payload_expunged"));
    }
}

herald_e2e::e2e_tests! {
    async fn send_example_delivers_the_event_types_example_to_one_endpoint() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let target = endpoint(&herald, receiver.url("target"), json!({})).await;
        endpoint(&herald, receiver.url("bystander"), json!({})).await;
        let created = herald
            .post(
                "/api/v1/event-type",
                json!({
                    "name": "user.signup",
                    "description": "A user signed up",
                    "schemas": {"1": {"type": "object", "examples": [{"user": "jane", "plan": "pro"}]}}
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");

        let sent = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{target}/send-example"),
                json!({"eventType": "user.signup"}),
            )
            .await;
        assert_eq!(sent.status, 200, "{sent:?}");
        assert_eq!(sent.body["eventType"], json!("user.signup"));
        assert_eq!(sent.body["payload"], json!({"user": "jane", "plan": "pro"}));
        let got = receiver
            .wait_for("target", 1, Duration::from_secs(20))
            .await;
        assert_eq!(got.len(), 1, "server log:\n{}", herald.log());
        let body: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(body, json!({"user": "jane", "plan": "pro"}));

        // Without a schema example the payload is a generic object.
        let generic = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{target}/send-example"),
                json!({"eventType": "no.schema"}),
            )
            .await;
        assert_eq!(generic.status, 200);
        assert_eq!(generic.body["payload"]["type"], json!("no.schema"));
        receiver
            .wait_for("target", 2, Duration::from_secs(20))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            receiver.received("bystander").is_empty(),
            "examples go to the one endpoint only"
        );
    }
}

herald_e2e::e2e_tests! {
    async fn bad_attempt_requests_are_refused_and_change_nothing() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        let ep = endpoint(&herald, "https://example.com/hook".into(), json!({})).await;
        let msg = message(&herald, json!({"eventType": "t", "payload": {}})).await;
        let by_msg = format!("/api/v1/app/a/attempt/msg/{msg}");

        for (path, field) in [
            (format!("{by_msg}?status=7"), "status"),
            (format!("{by_msg}?status=x"), "status"),
            (format!("{by_msg}?status_code_class=250"), "status_code_class"),
            (format!("{by_msg}?before=yesterday"), "before"),
            (format!("{by_msg}?limit=0"), "limit"),
            (format!("{by_msg}?iterator=garbage"), "iterator"),
            (format!("{by_msg}?event_types=bad%20name"), "event_types"),
            (format!("{by_msg}?channel=bad%20channel"), "channel"),
            (
                format!("/api/v1/app/a/endpoint/{ep}/msg?status=9"),
                "status",
            ),
            (
                format!("/api/v1/app/a/endpoint/{ep}/stats?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z"),
                "until",
            ),
        ] {
            let reply = herald.get(&path).await;
            assert_eq!(reply.status, 422, "{path}: {reply:?}");
            let loc = &reply.body["detail"][0]["loc"];
            assert_eq!(loc[loc.as_array().unwrap().len() - 1], json!(field), "{path}: {reply:?}");
        }

        let recover = format!("/api/v1/app/a/endpoint/{ep}/recover");
        let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let ancient = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
        let recent = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        for (body, field) in [
            (json!({}), "since"),
            (json!({"since": "not a time"}), "since"),
            (json!({"since": future}), "since"),
            (json!({"since": ancient}), "since"),
            (json!({"since": recent, "until": ancient}), "until"),
            (json!({"since": recent, "extra": 1}), "extra"),
        ] {
            let reply = herald.post(&recover, body.clone()).await;
            assert_eq!(reply.status, 422, "{body}: {reply:?}");
            let loc = &reply.body["detail"][0]["loc"];
            assert_eq!(
                loc[loc.as_array().unwrap().len() - 1],
                json!(field),
                "{body}: {reply:?}"
            );
        }
        let example = format!("/api/v1/app/a/endpoint/{ep}/send-example");
        for body in [
            json!({}),
            json!({"eventType": "bad name"}),
            json!({"eventType": 5}),
        ] {
            let reply = herald.post(&example, body.clone()).await;
            assert_eq!(reply.status, 422, "{body}: {reply:?}");
        }
        assert_eq!(herald.count_rows("message").await, 1, "nothing was stored");

        // Unknown or foreign objects are the same 404.
        let other = herald.create_tenant("other").await;
        for path in [
            "/api/v1/app/a/attempt/msg/msg_2fDUKvXJkLHTBJqVMkPBGcBmFhz".to_owned(),
            "/api/v1/app/a/attempt/endpoint/ep_2fDUKvXJkLHTBJqVMkPBGcBmFhz".to_owned(),
            format!("/api/v1/app/a/msg/{msg}/attempt/atmpt_2fDUKvXJkLHTBJqVMkPBGcBmFhz"),
            format!("/api/v1/app/nope/endpoint/{ep}/stats"),
        ] {
            assert_eq!(herald.get(&path).await.status, 404, "{path}");
        }
        for (method, path) in [
            (Method::GET, by_msg.clone()),
            (Method::GET, format!("/api/v1/app/a/msg/{msg}/endpoint")),
            (Method::GET, format!("/api/v1/app/a/endpoint/{ep}/stats")),
            (
                Method::POST,
                format!("/api/v1/app/a/msg/{msg}/endpoint/{ep}/resend"),
            ),
        ] {
            let reply = herald.request(method, &path, Some(&other.key), None).await;
            assert_eq!(reply.status, 404, "another tenant: {path}: {reply:?}");
        }
        assert_eq!(herald.count_rows("delivery").await, 1);
        assert!(herald.is_running());
    }
}

herald_e2e::e2e_tests! {
    async fn attempts_keep_their_request_and_response_headers() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.response_headers(
            "hdr",
            &[("x-receiver", "seen"), ("set-cookie", "session=secret")],
        );
        herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        endpoint(
            &herald,
            receiver.url("hdr"),
            json!({"headers": {"X-Team": "billing", "Authorization": "Bearer receiver-credential"}}),
        )
        .await;
        let msg = message(&herald, json!({"eventType": "e", "payload": {"n": 1}})).await;
        let by_msg = format!("/api/v1/app/a/attempt/msg/{msg}");
        let body = eventually(&herald, &by_msg, |b| data_len(b) == 1).await;
        let attempt = &body["data"][0];
        let sent = &receiver.received("hdr")[0];

        // What was sent, signature included; the endpoint's credential is not kept.
        let request = &attempt["requestHeaders"];
        assert_eq!(request["webhook-id"], json!(msg), "{attempt}");
        assert_eq!(request["webhook-signature"], json!(sent.header("webhook-signature")));
        assert_eq!(request["webhook-timestamp"], json!(sent.header("webhook-timestamp")));
        assert_eq!(request["content-type"], json!("application/json"));
        assert_eq!(request["x-team"], json!("billing"));
        assert_eq!(request["authorization"], json!("[redacted]"));
        assert!(!attempt.to_string().contains("receiver-credential"), "{attempt}");
        // What came back, cookies redacted.
        let response = &attempt["responseHeaders"];
        assert_eq!(response["x-receiver"], json!("seen"), "{attempt}");
        assert_eq!(response["set-cookie"], json!("[redacted]"));

        // Without content, and once expunged, the response's headers go with its body.
        let bare = herald.get(&format!("{by_msg}?with_content=false")).await;
        assert!(bare.body["data"][0].get("responseHeaders").is_none(), "{bare:?}");
        let id = attempt["id"].as_str().unwrap();
        let expunge = herald
            .delete(&format!("/api/v1/app/a/msg/{msg}/attempt/{id}/content"))
            .await;
        assert_eq!(expunge.status, 204, "{expunge:?}");
        let after = herald.get(&format!("/api/v1/app/a/msg/{msg}/attempt/{id}")).await;
        assert!(after.body.get("responseHeaders").is_none(), "{after:?}");
        assert_eq!(after.body["requestHeaders"]["x-team"], json!("billing"));
    }
}
