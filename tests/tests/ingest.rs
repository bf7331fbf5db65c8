//! Inbound webhooks end to end, on both backends: one source per provider
//! (`stripe`, `github`, `shopify`, `slack`, `standard`, `hmac`), requests
//! signed by the providers' own code (herald-verifiers' signers: Stripe's
//! `WebhookSignature.generate_signature_header`, `@octokit/webhooks-methods`'
//! `sign`, `slack_sdk`'s `SignatureVerifier.generate_signature`,
//! `standardwebhooks`' `Webhook.sign`; Shopify's and a custom header's
//! documented recipes). Herald must accept each, store its body byte for byte
//! and relay it through the real worker to exactly the endpoints whose
//! filters (wildcards among them) match, signed with Herald's own scheme;
//! answer a redelivery 200 without a second message; refuse tampered, stale
//! and unsigned requests with 401, an unknown source with 404 and an oversize
//! body with 413, storing nothing; answer Slack's URL check; and count every
//! refusal by provider and reason. Then the source API: its 422s, its
//! tenant scoping, and changes that apply to the next request.
//!
//! Skips with a notice when Python, Node or a registry is unusable, and fails
//! instead under `HERALD_REQUIRE_SERVICES=1`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{skip_or_fail, Herald, Options, Reply};
use herald_verifiers::change_one_byte;
use herald_verifiers::sign::{sign, HmacSigning, SignRequest, Signer};
use serde_json::{json, Value};

/// Each payload and the signature-free headers its provider sends.
struct Inbound {
    provider: &'static str,
    /// Settings of the source beside `appId` and `provider`.
    settings: Value,
    /// What the provider shows as the secret; `None`: Herald generates one.
    secret: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    event_type: &'static str,
    event_id: &'static str,
    /// Which endpoints (by path) must get it.
    endpoints: &'static [&'static str],
}

const ACME: &str = "X-Acme-Signature";

fn inbound() -> Vec<Inbound> {
    vec![
        Inbound {
            provider: "stripe",
            settings: json!({}),
            secret: Some("whsec_9Ctb3rnFvnRVwFZWo8dhdn4lV0D1qsTZ"),
            headers: vec![],
            body: r#"{"id":"evt_1NG8Du2eZvKYlo2CT","object":"event","api_version":"2024-06-20","created":1700000000,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":2000,"currency":"usd"}}}"#,
            event_type: "payment_intent.succeeded",
            event_id: "stripe-evt_1NG8Du2eZvKYlo2CT",
            endpoints: &["everything", "payments"],
        },
        Inbound {
            provider: "github",
            settings: json!({}),
            secret: None,
            headers: vec![
                ("X-GitHub-Event", "issues"),
                ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
            body: r#"{"action":"opened","issue":{"number":1347,"title":"Zoë found a 🦀"},"repository":{"full_name":"octocat/Hello-World"}}"#,
            event_type: "issues.opened",
            event_id: "github-72d3162e-cc78-11e3-81ab-4c9367dc0958",
            endpoints: &["everything", "code"],
        },
        Inbound {
            provider: "shopify",
            settings: json!({}),
            secret: Some("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"),
            headers: vec![
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
                ("X-Shopify-Shop-Domain", "herald-test.myshopify.com"),
            ],
            // With the newline some senders end a body with: kept too.
            body: "{\"id\":820982911946154508,\"email\":\"jon@example.com\",\"total_price\":\"199.65\"}\n",
            event_type: "orders.create",
            event_id: "shopify-b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            endpoints: &["everything", "shop"],
        },
        Inbound {
            provider: "slack",
            settings: json!({}),
            secret: Some("8f742231b10e8888abcd99yyyzzz85a5"),
            headers: vec![],
            body: r#"{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{"type":"app_mention","user":"U123ABC456","text":"<@U0LAN0Z89> is it everything a river should be?","ts":"1515449522.000016","channel":"C123ABC456"},"type":"event_callback","event_id":"Ev0PV52K21","event_time":1515449522}"#,
            event_type: "app_mention",
            event_id: "slack-Ev0PV52K21",
            endpoints: &["everything", "chat"],
        },
        Inbound {
            provider: "standard",
            settings: json!({}),
            secret: None,
            headers: vec![],
            body: r#"{"type":"invoice.paid","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"in_1","amount":500}}"#,
            event_type: "invoice.paid",
            event_id: "standard-msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            endpoints: &["everything", "payments"],
        },
        Inbound {
            provider: "hmac",
            settings: json!({
                "hmac": {"header": ACME, "algorithm": "sha1", "encoding": "hex", "prefix": "sha1="},
                "eventType": {"header": "X-Acme-Event"},
                "eventId": {"pointer": "/delivery/id"},
            }),
            secret: Some("acme-shared-secret"),
            headers: vec![("X-Acme-Event", "build.passed")],
            body: r#"{"delivery":{"id":"d-42"},"build":{"status":"passed","sha":"9fceb02"}}"#,
            event_type: "build.passed",
            event_id: "hmac-d-42",
            endpoints: &["everything", "code"],
        },
    ]
}

/// The endpoints of the target application: path → event-type filter.
const ENDPOINTS: &[(&str, &[&str])] = &[
    ("everything", &["*"]),
    ("payments", &["payment_intent.*", "invoice.*"]),
    ("code", &["issues.*", "build.*"]),
    ("shop", &["orders.*"]),
    ("chat", &["app_mention"]),
];

const STANDARD_MSG_ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";

fn signer(provider: &str) -> Signer {
    match provider {
        "stripe" => Signer::Stripe,
        "github" => Signer::Github,
        "shopify" => Signer::Shopify,
        "slack" => Signer::Slack,
        "standard" => Signer::Standard {
            msg_id: STANDARD_MSG_ID.to_owned(),
        },
        "hmac" => Signer::Hmac(HmacSigning {
            header: ACME.to_owned(),
            algorithm: "sha1".to_owned(),
            encoding: "hex".to_owned(),
            prefix: Some("sha1=".to_owned()),
        }),
        other => panic!("no signer for {other}"),
    }
}

/// Posts `body` with `headers` to `/ingest/{source_id}`.
async fn ingest(
    herald: &Herald,
    source_id: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Reply {
    let mut request = herald
        .http
        .post(format!("{}/ingest/{source_id}", herald.url))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    Herald::reply(request.send().await.expect("request reaches herald")).await
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Signs every request with the providers' code, off the runtime (the
/// first run installs them); `None` after a notice when they are unusable.
async fn signed(requests: Vec<SignRequest>) -> Option<Vec<Vec<(String, String)>>> {
    match tokio::task::spawn_blocking(move || sign(&requests))
        .await
        .expect("the signers ran")
    {
        Ok(signed) => Some(signed),
        Err(why) => skip_or_fail("the providers' signers (Python, Node)", &why),
    }
}

fn assert_refused(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    assert_eq!(reply.body["code"], code, "{what}: {reply:?}");
    assert!(
        reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {reply:?}"
    );
}

herald_e2e::e2e_tests! {
    async fn providers_webhooks_are_verified_deduplicated_and_relayed_through_wildcard_filters() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![
                ("HERALD_MAX_PAYLOAD_BYTES".into(), "65536".into()),
                ("HERALD_MAX_BODY_BYTES".into(), "131072".into()),
            ],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        let app = herald.post("/api/v1/app", json!({"name": "Inbound", "uid": "inbound"})).await;
        assert_eq!(app.status, 201, "{app:?}");
        let event_type = herald
            .post("/api/v1/event-type", json!({"name": "app_mention", "description": "Slack"}))
            .await;
        assert_eq!(event_type.status, 201, "{event_type:?}");
        let mut endpoint_keys = BTreeMap::new();
        for (path, filter) in ENDPOINTS {
            let created = herald
                .post(
                    "/api/v1/app/inbound/endpoint",
                    json!({"url": receiver.url(path), "filterTypes": filter}),
                )
                .await;
            assert_eq!(created.status, 201, "{path}: {created:?}");
            let id = created.body["id"].as_str().unwrap();
            let secret = herald.get(&format!("/api/v1/app/inbound/endpoint/{id}/secret")).await;
            endpoint_keys.insert(*path, secret.body["key"].as_str().unwrap().to_owned());
        }

        // One source per provider; the secret Herald holds for each.
        let inbound = inbound();
        let mut sources = Vec::new();
        for case in &inbound {
            let mut body = json!({"appId": "inbound", "provider": case.provider, "description": case.provider});
            body.as_object_mut().unwrap().extend(case.settings.as_object().unwrap().clone());
            if let Some(secret) = case.secret {
                body["secret"] = json!(secret);
            }
            let created = herald.post("/api/v1/source", body).await;
            assert_eq!(created.status, 201, "{}: {created:?}", case.provider);
            let id = created.body["id"].as_str().unwrap().to_owned();
            assert_eq!(
                created.body["ingestUrl"],
                format!("{}/ingest/{id}", herald.url),
                "{created:?}"
            );
            let secret = herald.get(&format!("/api/v1/source/{id}/secret")).await;
            let secret = secret.body["key"].as_str().unwrap().to_owned();
            if let Some(given) = case.secret {
                assert_eq!(secret, given);
            } else {
                assert!(secret.starts_with("whsec_"), "generated: {secret}");
            }
            sources.push((id, secret));
        }

        // Signed now, stale (ten minutes ago, over the 300 s tolerance) for
        // the providers that sign a timestamp, and Slack's URL check.
        let now = herald_signature::unix_now();
        let challenge = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let mut requests = Vec::new();
        for (case, (_, secret)) in inbound.iter().zip(&sources) {
            for at in [now, now - 600] {
                requests.push(SignRequest {
                    signer: signer(case.provider),
                    secret: secret.clone(),
                    body: case.body.as_bytes().to_vec(),
                    timestamp: at,
                });
            }
        }
        let slack_secret = sources[3].1.clone();
        requests.push(SignRequest {
            signer: Signer::Slack,
            secret: slack_secret,
            body: challenge.as_bytes().to_vec(),
            timestamp: now,
        });
        let Some(signatures) = signed(requests).await else {
            return;
        };

        let mut message_ids = BTreeMap::new();
        for (i, (case, (source_id, _))) in inbound.iter().zip(&sources).enumerate() {
            let what = case.provider;
            let mut headers = owned(&case.headers);
            headers.extend(signatures[2 * i].clone());
            let body = case.body.as_bytes().to_vec();

            let accepted = ingest(&herald, source_id, &headers, body.clone()).await;
            assert_eq!(accepted.status, 202, "{what}: {accepted:?}");
            assert_eq!(accepted.body["eventType"], case.event_type, "{what}: {accepted:?}");
            assert_eq!(accepted.body["eventId"], case.event_id, "{what}: {accepted:?}");
            assert_eq!(accepted.body["duplicate"], false, "{what}");
            let msg_id = accepted.body["id"].as_str().unwrap().to_owned();

            // The provider retries (the same event, signed again or not): 200, nothing new.
            let again = ingest(&herald, source_id, &headers, body.clone()).await;
            assert_eq!(again.status, 200, "{what}: {again:?}");
            assert_eq!(again.body["duplicate"], true, "{what}: {again:?}");
            assert_eq!(again.body["id"], msg_id.as_str(), "{what}: {again:?}");

            let tampered = ingest(&herald, source_id, &headers, change_one_byte(&body)).await;
            assert_refused(&tampered, 401, "signature_invalid", &format!("{what} tampered"));

            let mut stale = owned(&case.headers);
            stale.extend(signatures[2 * i + 1].clone());
            let stale_reply = ingest(&herald, source_id, &stale, body.clone()).await;
            if matches!(case.provider, "stripe" | "slack" | "standard") {
                assert_refused(&stale_reply, 401, "signature_expired", &format!("{what} stale"));
            } else {
                // No timestamp is signed: the same signature, a duplicate.
                assert_eq!(stale_reply.status, 200, "{what}: {stale_reply:?}");
            }

            let unsigned = ingest(&herald, source_id, &owned(&case.headers), body).await;
            assert_refused(&unsigned, 401, "signature_missing", &format!("{what} unsigned"));

            let message = herald.get(&format!("/api/v1/app/inbound/msg/{}", case.event_id)).await;
            assert_eq!(message.status, 200, "{what}: {message:?}");
            assert_eq!(message.body["id"], msg_id.as_str());
            assert_eq!(message.body["eventType"], case.event_type);
            message_ids.insert(msg_id, case);
        }

        // Slack's URL check is answered, and stored as nothing.
        let slack_id = &sources[3].0;
        let check = ingest(&herald, slack_id, &signatures[12], challenge.as_bytes().to_vec()).await;
        assert_eq!(check.status, 200, "{check:?}");
        assert_eq!(
            check.body,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );

        // Unknown sources, and bodies over the limits, before any signature check.
        let stripe_id = &sources[0].0;
        let gone = ingest(&herald, "src_2f1XbHn4kvT2GBsaKlBo1WtvCfU", &[], b"{}".to_vec()).await;
        assert_refused(&gone, 404, "not_found", "unknown source");
        let junk = ingest(&herald, "not-a-source", &[], b"{}".to_vec()).await;
        assert_refused(&junk, 404, "not_found", "not a source id");
        let over_payload = format!(r#"{{"type":"a","id":"evt_big","pad":"{}"}}"#, "x".repeat(70_000));
        let big = ingest(&herald, stripe_id, &[], over_payload.into_bytes()).await;
        assert_refused(&big, 413, "payload_too_large", "over HERALD_MAX_PAYLOAD_BYTES");
        let huge = ingest(&herald, stripe_id, &[], vec![b' '; 150_000]).await;
        assert_refused(&huge, 413, "payload_too_large", "over HERALD_MAX_BODY_BYTES");

        // Exactly one message per event, nothing of the refused requests.
        assert_eq!(herald.count_rows("message").await, inbound.len() as i64);

        // Each endpoint gets exactly what its filter matches, byte for byte,
        // signed by Herald's own scheme with its secret.
        for (path, _) in ENDPOINTS {
            let want: Vec<&Inbound> = inbound.iter().filter(|c| c.endpoints.contains(path)).collect();
            receiver.wait_for(path, want.len(), Duration::from_secs(30)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (path, _) in ENDPOINTS {
            let got = receiver.received(path);
            let want: Vec<&Inbound> = inbound.iter().filter(|c| c.endpoints.contains(path)).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{path} got {:?}; server log:\n{}",
                got.iter().map(|r| r.header("x-herald-event-type").to_owned()).collect::<Vec<_>>(),
                herald.log()
            );
            for delivery in got {
                let msg_id = delivery.header("webhook-id");
                let case = message_ids
                    .get(msg_id)
                    .unwrap_or_else(|| panic!("{path} got an unknown message {msg_id}"));
                assert!(case.endpoints.contains(path), "{path} got {}", case.event_type);
                assert_eq!(&delivery.body[..], case.body.as_bytes(), "{path}: {}", case.provider);
                assert_eq!(delivery.header("x-herald-event-type"), case.event_type);
                assert!(
                    delivery.signed_by(&endpoint_keys[path]),
                    "{path}: {} is not signed by Herald with the endpoint's secret",
                    case.provider
                );
            }
        }

        // Every refusal is counted by provider and reason; ids are no labels.
        for (provider, reason, count) in [
            ("stripe", "bad_signature", 1.0),
            ("github", "bad_signature", 1.0),
            ("hmac", "bad_signature", 1.0),
            ("stripe", "stale_timestamp", 1.0),
            ("slack", "stale_timestamp", 1.0),
            ("standard", "stale_timestamp", 1.0),
            ("shopify", "missing_signature", 1.0),
            ("stripe", "too_large", 2.0),
            ("unknown", "unknown_source", 2.0),
        ] {
            let series = format!(
                "herald_ingest_rejected_total{{provider=\"{provider}\",reason=\"{reason}\"}}"
            );
            assert_eq!(herald.metric(&series).await, count, "{series}");
        }
        for (provider, outcome, count) in [
            ("stripe", "stored", 1.0),
            ("stripe", "duplicate", 1.0),
            ("github", "duplicate", 2.0),
            ("slack", "challenge", 1.0),
        ] {
            let series = format!(
                "herald_ingest_received_total{{provider=\"{provider}\",outcome=\"{outcome}\"}}"
            );
            assert_eq!(herald.metric(&series).await, count, "{series}");
        }
    }

    async fn sources_are_tenant_scoped_checked_and_changes_apply_at_once() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app = herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        assert_eq!(app.status, 201, "{app:?}");
        let app_id = app.body["id"].as_str().unwrap().to_owned();

        for (body, loc) in [
            (json!({"appId": "nope", "provider": "github"}), vec!["body", "appId"]),
            (json!({"appId": "a", "provider": "stripe"}), vec!["body", "secret"]),
            (json!({"appId": "a", "provider": "github", "secret": ""}), vec!["body", "secret"]),
            (json!({"appId": "a", "provider": "standard", "secret": "not base64!"}), vec!["body", "secret"]),
            (json!({"appId": "a", "provider": "hmac"}), vec!["body", "hmac"]),
            (json!({"appId": "a", "provider": "hmac", "hmac": {"header": "X Sig"}}), vec!["body", "hmac", "header"]),
            (json!({"appId": "a", "provider": "github", "hmac": {"header": "X-Sig"}}), vec!["body", "hmac"]),
            (json!({"appId": "a", "provider": "stripe", "secret": "s", "eventType": {"pointer": "/type"}}), vec!["body", "eventType"]),
            (json!({"appId": "a", "provider": "standard", "eventType": {"pointer": "type"}}), vec!["body", "eventType"]),
            (json!({"appId": "a", "provider": "standard", "eventType": {"pointer": "/a", "header": "X"}}), vec!["body", "eventType"]),
            (json!({"appId": "a", "provider": "github", "toleranceSeconds": 0}), vec!["body", "toleranceSeconds"]),
            (json!({"appId": "a", "provider": "smtp"}), vec!["body", "provider"]),
        ] {
            let reply = herald.post("/api/v1/source", body.clone()).await;
            assert_eq!(reply.status, 422, "{body}: {reply:?}");
            assert_eq!(reply.body["detail"][0]["loc"], json!(loc), "{body}: {reply:?}");
        }
        assert_eq!(herald.count_rows("source").await, 0);

        let created = herald
            .post("/api/v1/source", json!({"appId": "a", "provider": "github", "description": "repo"}))
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.body["appId"], app_id.as_str());
        assert_eq!(created.body["toleranceSeconds"], 300);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/source/{id}");
        let listed = herald.get("/api/v1/source").await;
        assert_eq!(listed.body["data"][0]["id"], id.as_str(), "{listed:?}");
        let secret = herald.get(&format!("{path}/secret")).await.body["key"]
            .as_str()
            .unwrap()
            .to_owned();

        // Another tenant sees nothing of it.
        let other = herald.create_tenant("other").await;
        for (method, route) in [
            (reqwest::Method::GET, path.clone()),
            (reqwest::Method::GET, format!("{path}/secret")),
            (reqwest::Method::DELETE, path.clone()),
        ] {
            let reply = herald.request(method, &route, Some(&other.key), None).await;
            assert_eq!(reply.status, 404, "{route}: {reply:?}");
        }
        let patch = herald
            .request(reqwest::Method::PATCH, &path, Some(&other.key), Some(json!({"description": "x"})))
            .await;
        assert_eq!(patch.status, 404, "{patch:?}");
        let list = herald.request(reqwest::Method::GET, "/api/v1/source", Some(&other.key), None).await;
        assert_eq!(list.body["data"], json!([]), "{list:?}");

        let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
        let github = |key: &str, delivery: &str| {
            vec![
                ("X-Hub-Signature-256".to_owned(), herald_signature::github::sign(key.as_bytes(), &body)),
                ("X-GitHub-Event".to_owned(), "ping".to_owned()),
                ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
            ]
        };
        let ping = ingest(&herald, &id, &github(&secret, "d-1"), body.clone()).await;
        assert_eq!(ping.status, 202, "{ping:?}");
        assert_eq!(ping.body["eventType"], "ping");

        // A new secret applies to the very next request.
        let changed = herald
            .patch(&path, json!({"secret": "the new secret", "toleranceSeconds": 60}))
            .await;
        assert_eq!(changed.status, 200, "{changed:?}");
        assert_eq!(changed.body["toleranceSeconds"], 60);
        assert_eq!(changed.body["description"], "repo");
        let old = ingest(&herald, &id, &github(&secret, "d-2"), body.clone()).await;
        assert_refused(&old, 401, "signature_invalid", "the old secret");
        let new = ingest(&herald, &id, &github("the new secret", "d-2"), body.clone()).await;
        assert_eq!(new.status, 202, "{new:?}");

        // A change of provider takes what the new one needs, and drops the rest.
        let to_hmac = herald.patch(&path, json!({"provider": "hmac"})).await;
        assert_eq!(to_hmac.status, 422, "{to_hmac:?}");
        let to_hmac = herald
            .patch(&path, json!({"provider": "hmac", "hmac": {"header": "X-Sig", "prefix": "sha256="}}))
            .await;
        assert_eq!(to_hmac.status, 200, "{to_hmac:?}");
        assert_eq!(to_hmac.body["eventType"], json!({"pointer": "/type"}));
        assert_eq!(to_hmac.body["eventId"], Value::Null);
        let wrong = herald.patch(&path, json!({"eventType": {"header": "X Y"}})).await;
        assert_eq!(wrong.status, 422, "{wrong:?}");

        // Deleted: its URL is unknown from the next request on.
        assert_eq!(herald.delete(&path).await.status, 204);
        let after = ingest(&herald, &id, &github("the new secret", "d-3"), body.clone()).await;
        assert_refused(&after, 404, "not_found", "a deleted source");
        assert_eq!(herald.get(&path).await.status, 404);

        // A source goes with its application.
        let again = herald
            .post("/api/v1/source", json!({"appId": app_id, "provider": "github"}))
            .await;
        assert_eq!(again.status, 201, "{again:?}");
        assert_eq!(herald.delete("/api/v1/app/a").await.status, 204);
        assert_eq!(herald.count_rows("source").await, 0);
    }
}
