//! Every signature scheme an endpoint can choose through the API, end to end:
//! the running worker signs real deliveries to a local receiver, and each
//! provider's own verification library (herald-verifiers: `standardwebhooks`,
//! `svix`, `stripe`, `slack_sdk`, PyNaCl from PyPI, `@octokit/webhooks-methods`
//! from npm, Shopify's and the custom header's documented recipes) accepts
//! each delivery as sent and rejects it with one body byte changed; so does
//! herald-signature, with the key the API shows. A rotated Standard Webhooks
//! secret keeps verifying beside the new one.
//!
//! Skips with a notice when Python, Node or a registry is unusable, and fails
//! instead under `HERALD_REQUIRE_SERVICES=1`.

use std::time::{Duration, Instant};

use herald_e2e::receiver::{Received, Receiver};
use herald_e2e::{skip_or_fail, Backend, Herald, Options};
use herald_signature::SignatureScheme;
use herald_verifiers::{change_one_byte, Case, HmacOptions, Verifier};
use serde_json::{json, Value};

/// Longest all endpoints may take to receive one message.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

/// One endpoint per scheme, named by its receiver path; `standard` by
/// omitting `signatureScheme`, which must default to it. The custom header
/// covers every algorithm and both encodings.
fn endpoint_settings() -> Vec<(&'static str, Value)> {
    let hmac = |header: &str, algorithm: &str, encoding: &str| {
        json!({
            "signatureScheme": "hmac",
            "signatureOptions": {"header": header, "algorithm": algorithm, "encoding": encoding},
        })
    };
    vec![
        ("standard", json!({})),
        ("ed25519", json!({"signatureScheme": "ed25519"})),
        ("stripe", json!({"signatureScheme": "stripe"})),
        ("github", json!({"signatureScheme": "github"})),
        ("shopify", json!({"signatureScheme": "shopify"})),
        ("slack", json!({"signatureScheme": "slack"})),
        ("hmac-sha256-hex", hmac("X-Acme-Signature", "sha256", "hex")),
        (
            "hmac-sha384-base64",
            hmac("X-Signature-384", "sha384", "base64"),
        ),
        (
            "hmac-sha512-base64",
            hmac("X-Signature-512", "sha512", "base64"),
        ),
        ("hmac-sha1-hex", hmac("X-Signature-1", "sha1", "hex")),
    ]
}

/// An endpoint as the API describes it.
struct Endpoint {
    path: &'static str,
    id: String,
    scheme: String,
    options: Option<HmacOptions>,
    /// What `GET …/secret` shows: `whsec_…`, or `whpk_…` for `ed25519`.
    key: String,
}

impl Endpoint {
    /// herald-signature's form of the scheme.
    fn signature_scheme(&self) -> SignatureScheme {
        let wire = match &self.options {
            Some(options) => json!({ "hmac": options }),
            None => json!(self.scheme),
        };
        serde_json::from_value(wire).expect("a scheme herald-signature knows")
    }
}

/// A delivery and the key a receiver checks it with.
struct Checked<'a> {
    endpoint: &'a Endpoint,
    /// Which message and key, for the report.
    label: String,
    key: String,
    received: Received,
}

async fn create_endpoint(
    herald: &Herald,
    receiver: &Receiver,
    path: &'static str,
    settings: Value,
) -> Endpoint {
    let mut body = json!({ "url": receiver.url(path), "description": path });
    body.as_object_mut()
        .expect("an object")
        .extend(settings.as_object().expect("an object").clone());
    let created = herald.post("/api/v1/app/schemes/endpoint", body).await;
    assert_eq!(
        created.status, 201,
        "create the {path} endpoint: {created:?}"
    );
    let id = created.body["id"].as_str().expect("id").to_owned();
    let scheme = settings["signatureScheme"].as_str().unwrap_or("standard");
    let shown = herald
        .get(&format!("/api/v1/app/schemes/endpoint/{id}"))
        .await;
    assert_eq!(
        shown.body["signatureScheme"], scheme,
        "the {path} endpoint's scheme: {shown:?}"
    );
    assert_eq!(
        shown.body["signatureOptions"],
        settings
            .get("signatureOptions")
            .cloned()
            .unwrap_or(Value::Null),
        "the {path} endpoint's options: {shown:?}"
    );
    let options = settings
        .get("signatureOptions")
        .map(|o| serde_json::from_value(o.clone()).expect("hmac options"));
    Endpoint {
        path,
        scheme: scheme.to_owned(),
        options,
        key: secret(herald, &id).await,
        id,
    }
}

async fn secret(herald: &Herald, endpoint_id: &str) -> String {
    let reply = herald
        .get(&format!(
            "/api/v1/app/schemes/endpoint/{endpoint_id}/secret"
        ))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["key"].as_str().expect("key").to_owned()
}

/// Posts `payload` (exact bytes) as a message and waits until every endpoint
/// has received `count` requests; the latest one of each.
async fn deliver(
    herald: &Herald,
    receiver: &Receiver,
    endpoints: &[Endpoint],
    payload: &str,
    count: usize,
) -> Vec<Received> {
    let body = format!(r#"{{"eventType": "invoice.paid", "payload": {payload}}}"#);
    let created = herald
        .request_raw(
            reqwest::Method::POST,
            "/api/v1/app/schemes/msg",
            Some(&herald.tenant.key),
            "application/json",
            body.into_bytes(),
        )
        .await;
    assert_eq!(created.status, 202, "{created:?}");
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut latest = Vec::new();
    for endpoint in endpoints {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = receiver.wait_for(endpoint.path, count, left).await;
        assert_eq!(
            got.len(),
            count,
            "{} did not get message {count} within {} s; server log:\n{}",
            endpoint.path,
            DELIVERY_LIMIT.as_secs(),
            herald.log()
        );
        let request = got.last().expect("received").clone();
        assert_eq!(&request.body[..], payload.as_bytes(), "{}", endpoint.path);
        latest.push(request);
    }
    latest
}

fn headers(received: &Received) -> Vec<(String, String)> {
    received
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// herald-signature's own verdict on a delivery: it must carry every header
/// of its scheme, verify as sent and fail with one body byte changed.
fn check_with_herald_signature(checked: &Checked) {
    let scheme = checked.endpoint.signature_scheme();
    let received = &checked.received;
    for name in scheme.header_names() {
        assert!(
            received.headers.contains_key(name),
            "{}: no {name} header: {received:?}",
            checked.label
        );
    }
    assert_eq!(
        received.verify(&scheme, &checked.key),
        Ok(()),
        "{}",
        checked.label
    );
    let mut changed = received.clone();
    changed.body = change_one_byte(&received.body).into();
    assert!(
        changed.verify(&scheme, &checked.key).is_err(),
        "{}: one changed byte still verifies",
        checked.label
    );
}

/// The providers' verifiers' cases for one delivery: each verifier of its
/// scheme accepts it and rejects it with one body byte changed.
fn cases(checked: &Checked) -> Vec<Case> {
    let endpoint = checked.endpoint;
    Verifier::for_scheme(&endpoint.scheme, endpoint.options.as_ref())
        .into_iter()
        .flat_map(|verifier| {
            let case = Case::new(
                checked.label.clone(),
                verifier,
                checked.key.clone(),
                headers(&checked.received),
                checked.received.body.to_vec(),
            );
            [case.with_one_byte_changed(), case]
        })
        .collect()
}

#[tokio::test]
async fn every_scheme_chosen_through_the_api_is_accepted_by_its_providers_own_library() {
    // The providers' libraries first: without them there is nothing to check.
    let installed = tokio::task::spawn_blocking(herald_verifiers::install)
        .await
        .expect("install task");
    if let Err(why) = installed {
        return skip_or_fail("Python or Node with the providers' packages", &why)
            .unwrap_or_default();
    }
    // Signing does not depend on the store or the queue: the embedded backend
    // is enough.
    Backend::Embedded
        .scope(async {
            let herald = Herald::start_with(Options {
                worker: true,
                ..Options::default()
            })
            .await
            .expect("the embedded backend needs no services");
            let receiver = Receiver::start().await;
            let app = herald
                .post("/api/v1/app", json!({"name": "Schemes", "uid": "schemes"}))
                .await;
            assert_eq!(app.status, 201, "{app:?}");
            let mut endpoints = Vec::new();
            for (path, settings) in endpoint_settings() {
                endpoints.push(create_endpoint(&herald, &receiver, path, settings).await);
            }
            for endpoint in &endpoints {
                let prefix = if endpoint.scheme == "ed25519" {
                    "whpk_"
                } else {
                    "whsec_"
                };
                assert!(
                    endpoint.key.starts_with(prefix),
                    "{}: {}",
                    endpoint.path,
                    endpoint.key
                );
            }

            // Non-ASCII text, as UTF-8 bytes: every verifier must sign the same bytes.
            let first = deliver(
                &herald,
                &receiver,
                &endpoints,
                r#"{"type": "invoice.paid", "customer": "Zoë Ångström", "note": "🦀 ✓ 日本語"}"#,
                1,
            )
            .await;
            let mut checked: Vec<Checked> = endpoints
                .iter()
                .zip(first)
                .map(|(endpoint, received)| Checked {
                    endpoint,
                    label: format!("{}, first message", endpoint.path),
                    key: endpoint.key.clone(),
                    received,
                })
                .collect();

            // A rotation: the next delivery carries a signature by each secret.
            let standard = &endpoints[0];
            let rotated = herald
                .post(
                    &format!("/api/v1/app/schemes/endpoint/{}/secret/rotate", standard.id),
                    json!({}),
                )
                .await;
            assert_eq!(rotated.status, 200, "{rotated:?}");
            let new_secret = secret(&herald, &standard.id).await;
            assert_ne!(new_secret, standard.key, "the secret changed");
            let second = deliver(
                &herald,
                &receiver,
                &endpoints,
                r#"{"type": "invoice.void", "customer": "Łukasz Żółć"}"#,
                2,
            )
            .await;
            let received = second.into_iter().next().expect("the standard endpoint's");
            for (which, key) in [("previous", &standard.key), ("new", &new_secret)] {
                checked.push(Checked {
                    endpoint: standard,
                    label: format!("standard, after a rotation, {which} secret"),
                    key: key.clone(),
                    received: received.clone(),
                });
            }

            for delivery in &checked {
                check_with_herald_signature(delivery);
            }
            let cases: Vec<Case> = checked.iter().flat_map(cases).collect();
            let report = tokio::task::spawn_blocking(move || herald_verifiers::verify(&cases))
                .await
                .expect("verify task")
                .unwrap_or_else(|why| panic!("the verifiers were installed: {why}"));
            eprintln!("{report}");
            assert!(
                report.mismatches().is_empty(),
                "the providers' verifiers disagree with Herald's deliveries:\n{report}"
            );
        })
        .await;
}
