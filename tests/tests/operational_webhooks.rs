//! Operational webhooks end to end, on both backends (`::embedded`: SQLite and
//! the in-process queue; `::services`: PostgreSQL and RabbitMQ): a tenant
//! registers an operational endpoint through `/api/v1/operational-webhook/endpoint`
//! pointing at a real local receiver, and Herald's own events about its
//! endpoints and deliveries arrive there signed like any webhook — checked
//! with herald-signature, and for `endpoint.disabled` with the official
//! `svix` and `standardwebhooks` libraries from PyPI (herald-verifiers).

use std::time::Duration;

use herald_e2e::receiver::{Received, Receiver};
use herald_e2e::{e2e_tests, skip_or_fail, Herald, Options};
use herald_verifiers::{Case, Verifier};
use serde_json::{json, Value};

/// Longest an operational webhook may take to arrive (the relay hands it out
/// within a tenth of a second; a retry schedule of seconds may come first).
const ARRIVAL_LIMIT: Duration = Duration::from_secs(30);

const OPS: &str = "/api/v1/operational-webhook/endpoint";

/// A server with the worker (on RabbitMQ for the services backend) and the
/// given retry schedule.
async fn start(schedule: &str) -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        env: vec![("HERALD_RETRY_SCHEDULE".into(), schedule.into())],
        ..Options::default()
    })
    .await
}

/// Registers an operational endpoint at `path` of `receiver`; its id and secret.
async fn register(
    herald: &Herald,
    receiver: &Receiver,
    path: &str,
    filter_types: Option<&[&str]>,
) -> (String, String) {
    let mut body = json!({"url": receiver.url(path), "description": "ops", "uid": path});
    if let Some(types) = filter_types {
        body["filterTypes"] = json!(types);
    }
    let created = herald.post(OPS, body).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["filterTypes"], json!(filter_types));
    let id = created.body["id"].as_str().expect("id").to_owned();
    let secret = herald.get(&format!("{OPS}/{id}/secret")).await;
    assert_eq!(secret.status, 200, "{secret:?}");
    let key = secret.body["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("whsec_"), "{key}");
    (id, key)
}

/// Waits for `count` operational webhooks at `path`; each checked to be
/// signed with `key` and parsed.
async fn events(
    herald: &Herald,
    receiver: &Receiver,
    path: &str,
    key: &str,
    count: usize,
) -> Vec<Value> {
    let got = receiver.wait_for(path, count, ARRIVAL_LIMIT).await;
    assert!(
        got.len() >= count,
        "{path} got {} operational webhooks, wanted {count}: {:?}\nserver log:\n{}",
        got.len(),
        got.iter().map(body).collect::<Vec<_>>(),
        herald.log()
    );
    got.iter()
        .map(|received| {
            assert!(received.signed_by(key), "not signed by {key}: {received:?}");
            let event = body(received);
            assert_eq!(received.header("webhook-id"), received.header("svix-id"));
            assert_eq!(
                event["type"].as_str(),
                Some(received.header("x-herald-event-type")),
                "the event type header names the operational event"
            );
            event
        })
        .collect()
}

fn body(received: &Received) -> Value {
    serde_json::from_slice(&received.body).expect("an operational webhook is JSON")
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect()
}

/// The types of events one request caused, sorted: each is a message of its
/// own, delivered concurrently like any two messages, so they may arrive in
/// either order.
fn sorted_types(events: &[Value]) -> Vec<&str> {
    let mut types = types(events);
    types.sort_unstable();
    types
}

/// The event of type `event_type` among `events`.
fn of_type<'a>(events: &'a [Value], event_type: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} among {events:?}"))
}

async fn create_app(herald: &Herald, uid: &str) -> String {
    let app = herald
        .post("/api/v1/app", json!({"name": uid, "uid": uid}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    app.body["id"].as_str().expect("id").to_owned()
}

async fn create_endpoint(herald: &Herald, app: &str, body: Value) -> Value {
    let created = herald
        .post(&format!("/api/v1/app/{app}/endpoint"), body)
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.body
}

e2e_tests! {
    async fn endpoint_changes_arrive_as_signed_operational_webhooks() {
        let Some(herald) = start("1,1").await else { return };
        let receiver = Receiver::start().await;
        let (_, key) = register(&herald, &receiver, "ops", None).await;
        let app_id = create_app(&herald, "shop").await;

        let endpoint = create_endpoint(
            &herald,
            "shop",
            json!({"url": receiver.url("customer"), "uid": "customer-ep"}),
        )
        .await;
        let ep_id = endpoint["id"].as_str().expect("id").to_owned();
        let path = format!("/api/v1/app/shop/endpoint/{ep_id}");
        let created = events(&herald, &receiver, "ops", &key, 1).await;
        assert_eq!(types(&created), ["endpoint.created"]);
        let data = &created[0]["data"];
        assert_eq!(data["appId"], app_id.as_str());
        assert_eq!(data["appUid"], "shop");
        assert_eq!(data["endpointId"], ep_id.as_str());
        assert_eq!(data["endpointUid"], "customer-ep");
        assert!(created[0]["timestamp"].is_string(), "{created:?}");

        let disabled = herald.patch(&path, json!({"disabled": true})).await;
        assert_eq!(disabled.status, 200, "{disabled:?}");
        let got = events(&herald, &receiver, "ops", &key, 3).await;
        assert_eq!(sorted_types(&got[1..]), ["endpoint.disabled", "endpoint.updated"]);
        let disabled = of_type(&got[1..], "endpoint.disabled");
        assert_eq!(disabled["data"]["trigger"], "manual");
        assert_eq!(disabled["data"]["endpointId"], ep_id.as_str());

        let replaced = herald
            .put(&path, json!({"url": receiver.url("customer"), "uid": "customer-ep"}))
            .await;
        assert_eq!(replaced.status, 200, "{replaced:?}");
        let got = events(&herald, &receiver, "ops", &key, 5).await;
        assert_eq!(sorted_types(&got[3..]), ["endpoint.enabled", "endpoint.updated"]);

        let deleted = herald.delete(&path).await;
        assert_eq!(deleted.status, 204, "{deleted:?}");
        let got = events(&herald, &receiver, "ops", &key, 6).await;
        assert_eq!(types(&got[5..]), ["endpoint.deleted"]);
        assert_eq!(got[5]["data"]["endpointUid"], "customer-ep");

        // Nothing more: the operational endpoint's own creation, and the
        // deliveries to it, report nothing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.received("ops").len(), 6);
        // The operational application is nobody's application.
        let apps = herald.get("/api/v1/app").await;
        assert_eq!(apps.body["data"].as_array().map(Vec::len), Some(1), "{apps:?}");
    }

    async fn an_endpoint_answering_410_is_disabled_and_reported_as_svix_verifies_it() {
        let installed = tokio::task::spawn_blocking(herald_verifiers::install)
            .await
            .expect("install task");
        if let Err(why) = installed {
            return skip_or_fail("Python with the svix package", &why).unwrap_or_default();
        }
        let Some(herald) = start("1,1").await else { return };
        let receiver = Receiver::start().await;
        let (_, key) = register(&herald, &receiver, "ops", Some(&["endpoint.disabled"])).await;
        receiver.script("gone", &[410]);
        let app_id = create_app(&herald, "shop").await;
        let endpoint = create_endpoint(&herald, "shop", json!({"url": receiver.url("gone")})).await;
        let ep_id = endpoint["id"].as_str().expect("id").to_owned();

        let posted = herald
            .post("/api/v1/app/shop/msg", json!({"eventType": "order.paid", "payload": {"n": 1}}))
            .await;
        assert_eq!(posted.status, 202, "{posted:?}");
        let got = events(&herald, &receiver, "ops", &key, 1).await;
        assert_eq!(types(&got), ["endpoint.disabled"], "filterTypes keep endpoint.created out");
        let data = &got[0]["data"];
        assert_eq!(data["trigger"], "automatic");
        assert_eq!(data["appId"], app_id.as_str());
        assert_eq!(data["endpointId"], ep_id.as_str());
        assert!(data["failSince"].is_string(), "{data}");
        assert_eq!(receiver.received("gone").len(), 1, "one attempt, then disabled");
        let shown = herald.get(&format!("/api/v1/app/shop/endpoint/{ep_id}")).await;
        assert_eq!(shown.body["disabled"], true, "{shown:?}");

        // The official libraries accept the operational webhook as sent and
        // reject it with one byte changed.
        let received = receiver.received("ops").remove(0);
        let headers: Vec<(String, String)> = received
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
            .collect();
        let cases: Vec<Case> = [Verifier::Svix, Verifier::StandardWebhooks]
            .into_iter()
            .flat_map(|verifier| {
                let case = Case::new(
                    "endpoint.disabled",
                    verifier,
                    key.clone(),
                    headers.clone(),
                    received.body.to_vec(),
                );
                [case.with_one_byte_changed(), case]
            })
            .collect();
        let report = tokio::task::spawn_blocking(move || herald_verifiers::verify(&cases))
            .await
            .expect("verify task")
            .expect("the verifiers run");
        assert!(report.mismatches().is_empty(), "{report}");
    }

    async fn a_failing_delivery_reports_failing_then_exhausted_and_a_recovery_is_reported() {
        let Some(herald) = start("1,1,1,1,1").await else { return };
        let receiver = Receiver::start().await;
        let wanted = ["message.attempt.failing", "message.attempt.exhausted", "message.attempt.recovered"];
        let (_, key) = register(&herald, &receiver, "ops", Some(&wanted)).await;
        receiver.script("down", &[500]);
        receiver.script("flaky", &[503, 200]);
        let app_id = create_app(&herald, "shop").await;
        for name in ["order.paid", "order.flaky"] {
            let created = herald.post("/api/v1/event-type", json!({"name": name, "description": name})).await;
            assert_eq!(created.status, 201, "{created:?}");
        }
        let down = create_endpoint(&herald, "shop", json!({
            "url": receiver.url("down"), "uid": "down", "filterTypes": ["order.paid"],
        }))
        .await;
        let flaky = create_endpoint(&herald, "shop", json!({
            "url": receiver.url("flaky"), "filterTypes": ["order.flaky"],
        }))
        .await;
        let to_down = herald
            .post("/api/v1/app/shop/msg", json!({"eventType": "order.paid", "eventId": "order-1", "payload": {}}))
            .await;
        assert_eq!(to_down.status, 202, "{to_down:?}");

        // Six attempts (the first and five retries): the fourth failure is
        // reported as failing, the sixth as exhausted.
        let got = events(&herald, &receiver, "ops", &key, 2).await;
        assert_eq!(types(&got), ["message.attempt.failing", "message.attempt.exhausted"]);
        assert_eq!(receiver.received("down").len(), 6);
        for event in &got {
            let data = &event["data"];
            assert_eq!(data["appId"], app_id.as_str());
            assert_eq!(data["appUid"], "shop");
            assert_eq!(data["endpointId"], down["id"]);
            assert_eq!(data["msgId"], to_down.body["id"]);
            assert_eq!(data["msgEventId"], "order-1");
            assert_eq!(data["lastAttempt"]["responseStatusCode"], 500);
            assert!(data["lastAttempt"]["id"].as_str().is_some_and(|id| id.starts_with("atmpt_")), "{data}");
        }
        // The attempts named are the fourth and the sixth.
        let attempts = herald
            .get(&format!("/api/v1/app/shop/attempt/endpoint/{}", down["id"].as_str().unwrap()))
            .await;
        let ids: Vec<&Value> = attempts.body["data"].as_array().expect("attempts").iter().map(|a| &a["id"]).collect();
        assert_eq!(ids.len(), 6, "{attempts:?}");
        assert!(ids.contains(&&got[0]["data"]["lastAttempt"]["id"]));
        assert!(ids.contains(&&got[1]["data"]["lastAttempt"]["id"]));

        let to_flaky = herald
            .post("/api/v1/app/shop/msg", json!({"eventType": "order.flaky", "payload": {}}))
            .await;
        assert_eq!(to_flaky.status, 202, "{to_flaky:?}");
        let got = events(&herald, &receiver, "ops", &key, 3).await;
        assert_eq!(types(&got[2..]), ["message.attempt.recovered"]);
        let data = &got[2]["data"];
        assert_eq!(data["endpointId"], flaky["id"]);
        assert_eq!(data["msgId"], to_flaky.body["id"]);
        assert_eq!(data["lastAttempt"]["responseStatusCode"], 200);
        assert!(data["msgEventId"].is_null(), "{data}");
    }

    async fn failures_of_operational_webhooks_themselves_report_nothing() {
        let Some(herald) = start("1,1,1,1,1").await else { return };
        let receiver = Receiver::start().await;
        receiver.script("ops", &[500]);
        // A second operational endpoint that listens to attempt failures: it
        // would hear of the first one's, were they reported.
        let (_, key) = register(&herald, &receiver, "ops", None).await;
        let (_, watcher_key) = register(&herald, &receiver, "watcher", None).await;
        create_app(&herald, "shop").await;
        create_endpoint(&herald, "shop", json!({"url": receiver.url("customer")})).await;
        let got = events(&herald, &receiver, "ops", &key, 6).await;
        assert_eq!(types(&got), ["endpoint.created"; 6], "one event, attempted six times");
        let watched = events(&herald, &receiver, "watcher", &watcher_key, 1).await;
        // Time for a seventh attempt or a report to show up, were there one.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(receiver.received("ops").len(), 6);
        assert_eq!(receiver.received("watcher").len(), 1, "{watched:?}");
    }

    async fn the_operational_endpoint_api_round_trips_and_refuses_bad_input_with_422() {
        let Some(herald) = Herald::start().await else { return };
        // Before any: an empty page, and 404s.
        let empty = herald.get(OPS).await;
        assert_eq!(empty.status, 200, "{empty:?}");
        assert_eq!(empty.body["data"], json!([]));
        assert_eq!(empty.body["done"], true);
        assert_eq!(herald.get(&format!("{OPS}/nope")).await.status, 404);

        let bad: [(Value, &str); 7] = [
            (json!({"url": "ftp://example.com"}), "url"),
            (json!({"url": "https://example.com", "filterTypes": ["invoice.paid"]}), "filterTypes"),
            (json!({"url": "https://example.com", "filterTypes": []}), "filterTypes"),
            (json!({"url": "https://example.com", "rateLimit": 0}), "rateLimit"),
            (json!({"url": "https://example.com", "uid": "has space"}), "uid"),
            (json!({"url": "https://example.com", "secret": "whsec_short"}), "secret"),
            (json!({"url": "https://example.com", "description": "x".repeat(2000)}), "description"),
        ];
        for (body, field) in &bad {
            let reply = herald.post(OPS, body.clone()).await;
            assert_eq!(reply.status, 422, "{body}: {reply:?}");
            let loc = &reply.body["detail"][0]["loc"];
            assert_eq!(loc, &json!(["body", field]), "{body}: {reply:?}");
            assert!(reply.body["detail"][0]["msg"].is_string(), "{reply:?}");
        }
        assert_eq!(herald.count_rows("endpoint").await, 0, "nothing stored");
        assert_eq!(herald.count_rows("application").await, 0, "nothing stored");

        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let created = herald
            .post(OPS, json!({
                "url": "https://example.com/ops", "uid": "ops-1", "description": "mine",
                "filterTypes": ["endpoint.disabled"], "rateLimit": 10,
                "metadata": {"team": "sre"}, "secret": secret,
            }))
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let out = &created.body;
        assert!(out["id"].as_str().is_some_and(|id| id.starts_with("ep_")), "{out}");
        assert_eq!(out["uid"], "ops-1");
        assert_eq!(out["url"], "https://example.com/ops");
        assert_eq!(out["description"], "mine");
        assert_eq!(out["disabled"], false);
        assert_eq!(out["filterTypes"], json!(["endpoint.disabled"]));
        assert_eq!(out["eventTypes"], json!(["endpoint.disabled"]));
        assert_eq!(out["throttleRate"], 10);
        assert_eq!(out["rateLimit"], 10);
        assert_eq!(out["metadata"], json!({"team": "sre"}));
        assert!(out["createdAt"].is_string() && out["updatedAt"].is_string(), "{out}");
        let id = out["id"].as_str().unwrap().to_owned();
        let duplicate = herald.post(OPS, json!({"url": "https://example.com/2", "uid": "ops-1"})).await;
        assert_eq!(duplicate.status, 409, "{duplicate:?}");

        assert_eq!(herald.get(&format!("{OPS}/ops-1")).await.body["id"], id.as_str());
        let shown = herald.get(&format!("{OPS}/{id}/secret")).await;
        assert_eq!(shown.body["key"], secret);

        // Invalid updates change nothing.
        let bad_put = herald.put(&format!("{OPS}/{id}"), json!({"url": "https://example.com", "filterTypes": ["nope"]})).await;
        assert_eq!(bad_put.status, 422, "{bad_put:?}");
        let bad_patch = herald.patch(&format!("{OPS}/{id}"), json!({"rateLimit": 0})).await;
        assert_eq!(bad_patch.status, 422, "{bad_patch:?}");
        assert_eq!(bad_patch.body["detail"][0]["loc"], json!(["body", "rateLimit"]));
        assert_eq!(herald.get(&format!("{OPS}/{id}")).await.body["rateLimit"], 10);

        let patched = herald
            .patch(&format!("{OPS}/{id}"), json!({"disabled": true, "filterTypes": null, "throttleRate": 5}))
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(patched.body["disabled"], true);
        assert_eq!(patched.body["filterTypes"], Value::Null);
        assert_eq!(patched.body["rateLimit"], 5);
        assert_eq!(patched.body["uid"], "ops-1");
        let put = herald.put("/api/v1/operational-webhook/endpoint/ops-1", json!({"url": "https://example.com/new"})).await;
        assert_eq!(put.status, 200, "{put:?}");
        assert_eq!(put.body["url"], "https://example.com/new");
        assert_eq!(put.body["uid"], "ops-1", "a PUT by uid keeps it");
        assert_eq!(put.body["disabled"], false);
        assert_eq!(put.body["description"], "");

        // PUT creates under a new uid (the SDKs' upsert), never under an id.
        let upserted = herald.put(&format!("{OPS}/by-put"), json!({"url": "https://example.com/put"})).await;
        assert_eq!(upserted.status, 201, "{upserted:?}");
        assert_eq!(upserted.body["uid"], "by-put");
        let unknown = format!("{OPS}/ep_2srOrx2ZWZBpBUvZwXKQmoEYga2");
        assert_eq!(herald.put(&unknown, json!({"url": "https://example.com"})).await.status, 404);
        assert_eq!(herald.delete(&format!("{OPS}/by-put")).await.status, 204);

        let rotated = herald.post(&format!("{OPS}/{id}/secret/rotate"), json!({})).await;
        assert_eq!(rotated.status, 204, "{rotated:?}");
        let new_key = herald.get(&format!("{OPS}/{id}/secret")).await.body["key"].clone();
        assert_ne!(new_key, json!(secret));
        let bad_key = herald.post(&format!("{OPS}/{id}/secret/rotate"), json!({"key": "nope"})).await;
        assert_eq!(bad_key.status, 422, "{bad_key:?}");

        // Svix pagination.
        for n in 0..2 {
            let more = herald.post(OPS, json!({"url": format!("https://example.com/{n}")})).await;
            assert_eq!(more.status, 201, "{more:?}");
        }
        let first = herald.get(&format!("{OPS}?limit=2")).await;
        assert_eq!(first.body["data"].as_array().map(Vec::len), Some(2), "{first:?}");
        assert_eq!(first.body["done"], false);
        let iterator = first.body["iterator"].as_str().expect("iterator").to_owned();
        let second = herald.get(&format!("{OPS}?limit=2&iterator={iterator}")).await;
        assert_eq!(second.body["data"].as_array().map(Vec::len), Some(1), "{second:?}");
        assert_eq!(second.body["done"], true);

        // Hidden from the application routes, and from other tenants.
        assert_eq!(herald.get("/api/v1/app").await.body["data"], json!([]));
        let other = herald.create_tenant("other").await;
        let theirs = herald
            .request(reqwest::Method::GET, &format!("{OPS}/{id}"), Some(&other.key), None)
            .await;
        assert_eq!(theirs.status, 404, "{theirs:?}");

        // An application's token is not the tenant's: 403.
        create_app(&herald, "portal").await;
        let access = herald.post("/api/v1/auth/app-portal-access/portal", json!({})).await;
        assert_eq!(access.status, 200, "{access:?}");
        let token = access.body["token"].as_str().expect("token");
        let refused = herald.request(reqwest::Method::GET, OPS, Some(token), None).await;
        assert_eq!(refused.status, 403, "{refused:?}");

        assert_eq!(herald.delete(&format!("{OPS}/{id}")).await.status, 204);
        assert_eq!(herald.get(&format!("{OPS}/{id}")).await.status, 404);
        assert_eq!(herald.delete(&format!("{OPS}/{id}")).await.status, 404);
    }
}

/// The production topology (docker-compose's: an API process on RabbitMQ and
/// Redis, a separate worker process): the API stores `endpoint.created`, the
/// worker process stores `endpoint.disabled` after a 410, and the worker's
/// relay delivers both.
#[tokio::test]
async fn in_the_compose_topology_api_and_worker_events_both_arrive() {
    use herald_e2e::topology::{Topology, TopologyOptions};
    let Some(topology) = Topology::start(TopologyOptions::compose()).await else {
        return;
    };
    let herald = &topology.api;
    let receiver = Receiver::start().await;
    let (_, key) = register(herald, &receiver, "ops", None).await;
    receiver.script("gone", &[410]);
    create_app(herald, "shop").await;
    let endpoint = create_endpoint(herald, "shop", json!({"url": receiver.url("gone")})).await;
    let posted = herald
        .post(
            "/api/v1/app/shop/msg",
            json!({"eventType": "order.paid", "payload": {}}),
        )
        .await;
    assert_eq!(posted.status, 202, "{posted:?}");
    let got = receiver.wait_for("ops", 2, ARRIVAL_LIMIT).await;
    let got: Vec<Value> = got
        .iter()
        .map(|received| {
            assert!(received.signed_by(&key), "{received:?}");
            body(received)
        })
        .collect();
    assert_eq!(
        sorted_types(&got),
        ["endpoint.created", "endpoint.disabled"],
        "{}",
        topology.logs()
    );
    let disabled = of_type(&got, "endpoint.disabled");
    assert_eq!(disabled["data"]["trigger"], "automatic");
    assert_eq!(disabled["data"]["endpointId"], endpoint["id"]);
}
