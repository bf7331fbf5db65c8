//! One delivery attempt against a real receiver on 127.0.0.1, which these tests
//! allow-list past the SSRF guard (except where the guard itself is tested).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use herald_core::{EventTypeName, MessageId};
use herald_signature::{parse_secret, standard, unix_now, SignatureScheme, SigningKey};
use herald_worker::{
    AttemptOutcome, DeliveryRequest, ErrorClass, Sender, SenderConfig, SsrfPolicy,
    DEFAULT_USER_AGENT,
};
use reqwest::dns::{Name, Resolve};
use url::Url;

const CURRENT: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PREVIOUS: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    path: &'static str,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A receiver with one route per behaviour, recording every request.
struct Receiver {
    addr: SocketAddr,
    log: Log,
}

fn record(log: &Log, path: &'static str, headers: HeaderMap, body: Bytes) {
    log.lock().expect("log lock").push(Received {
        path,
        headers,
        body,
    });
}

async fn ok(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    record(&log, "/ok", headers, body);
    (StatusCode::OK, "thanks")
}

async fn target(State(log): State<Log>, headers: HeaderMap, body: Bytes) {
    record(&log, "/target", headers, body);
}

impl Receiver {
    async fn start() -> Self {
        let log = Log::default();
        let app = Router::new()
            .route("/ok", post(ok))
            .route(
                "/fail",
                post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(10_000)) }),
            )
            .route(
                "/redirect",
                post(|| async { (StatusCode::FOUND, [("location", "/target")]) }),
            )
            .route("/target", get(target).post(target))
            .route(
                "/limited",
                post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]) }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    StatusCode::OK
                }),
            )
            .with_state(Arc::clone(&log));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver runs");
        });
        Self { addr, log }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("receiver url")
    }

    fn received(&self, path: &str) -> Vec<Received> {
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|r| r.path == path).cloned().collect()
    }
}

fn loopback_allowed() -> SsrfPolicy {
    SsrfPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")])
}

fn sender(ssrf: SsrfPolicy) -> Sender {
    Sender::new(SenderConfig {
        timeout: Duration::from_millis(300),
        ssrf,
        ..SenderConfig::default()
    })
    .expect("sender builds")
}

fn request(url: Url) -> DeliveryRequest {
    DeliveryRequest {
        url,
        msg_id: MessageId::new(),
        event_type: EventTypeName::parse("invoice.paid").expect("event type"),
        timestamp: unix_now(),
        // Deliberately not normalised JSON: it must arrive byte for byte.
        body: "{\"b\": 1,  \"a\":\"Zoë 🦀\"}".as_bytes().to_vec(),
        keys: vec![
            SigningKey::parse(CURRENT).expect("secret"),
            SigningKey::parse(PREVIOUS).expect("secret"),
        ],
        scheme: SignatureScheme::Standard,
        headers: BTreeMap::new(),
    }
}

fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn assert_no_response(outcome: &AttemptOutcome, class: ErrorClass) {
    assert_eq!(outcome.error_class, Some(class), "{outcome:?}");
    assert_eq!(outcome.status_code, 0, "{outcome:?}");
    assert!(!outcome.success);
    assert!(outcome.error_detail.is_some());
}

#[tokio::test]
async fn a_2xx_is_a_success_with_the_exact_body_and_a_verifiable_signature() {
    let receiver = Receiver::start().await;
    let request = request(receiver.url("/ok"));
    let sent_body = request.body.clone();
    let msg_id = request.msg_id.to_string();

    let outcome = sender(loopback_allowed()).send(request).await;

    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.status_code, 200);
    assert_eq!(outcome.error_class, None);
    assert_eq!(outcome.response_body, "thanks");
    let received = receiver.received("/ok");
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.body.as_ref(), sent_body.as_slice());
    assert_eq!(header(got, "content-type"), Some("application/json"));
    assert_eq!(header(got, "user-agent"), Some(DEFAULT_USER_AGENT));
    assert_eq!(header(got, "webhook-id"), Some(msg_id.as_str()));
    assert_eq!(header(got, "svix-id"), Some(msg_id.as_str()));
    assert_eq!(header(got, "x-herald-event-type"), Some("invoice.paid"));
    let headers =
        standard::WebhookHeaders::from_lookup(|name| header(got, name)).expect("signature headers");
    for secret in [CURRENT, PREVIOUS] {
        let key = parse_secret(secret).expect("secret");
        assert_eq!(
            standard::verify(&key, &headers, &got.body, standard::DEFAULT_TOLERANCE),
            Ok(()),
            "signature verifies with {secret}"
        );
    }
}

#[tokio::test]
async fn every_scheme_carries_the_message_id_and_its_own_signature_header() {
    let receiver = Receiver::start().await;
    let mut request = request(receiver.url("/ok"));
    request.scheme = SignatureScheme::Github;
    let msg_id = request.msg_id.to_string();

    let outcome = sender(loopback_allowed()).send(request).await;

    assert!(outcome.success, "{outcome:?}");
    let received = receiver.received("/ok");
    assert_eq!(header(&received[0], "webhook-id"), Some(msg_id.as_str()));
    assert!(header(&received[0], "x-hub-signature-256").is_some());
}

#[tokio::test]
async fn a_500_is_a_failure_with_its_status_and_a_truncated_body() {
    let receiver = Receiver::start().await;

    let outcome = sender(loopback_allowed())
        .send(request(receiver.url("/fail")))
        .await;

    assert!(!outcome.success);
    assert_eq!(outcome.status_code, 500);
    assert_eq!(outcome.error_class, Some(ErrorClass::Http5xx));
    assert_eq!(outcome.response_body, "x".repeat(4096));
    assert_eq!(outcome.retry_after, None);
    assert_eq!(outcome.error_detail, None);
}

#[tokio::test]
async fn a_302_is_a_failure_and_the_redirect_is_not_followed() {
    let receiver = Receiver::start().await;

    let outcome = sender(loopback_allowed())
        .send(request(receiver.url("/redirect")))
        .await;

    assert!(!outcome.success);
    assert_eq!(outcome.status_code, 302);
    assert_eq!(outcome.error_class, Some(ErrorClass::Http3xx));
    assert!(receiver.received("/target").is_empty());
}

#[tokio::test]
async fn a_429_with_retry_after_seconds_reports_the_delay() {
    let receiver = Receiver::start().await;

    let outcome = sender(loopback_allowed())
        .send(request(receiver.url("/limited")))
        .await;

    assert_eq!(outcome.status_code, 429);
    assert_eq!(outcome.error_class, Some(ErrorClass::Http4xx));
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_a_timeout() {
    let receiver = Receiver::start().await;

    let outcome = sender(loopback_allowed())
        .send(request(receiver.url("/slow")))
        .await;

    assert_no_response(&outcome, ErrorClass::Timeout);
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/")).expect("url");

    let outcome = sender(loopback_allowed()).send(request(url)).await;

    assert_no_response(&outcome, ErrorClass::Connect);
}

#[tokio::test]
async fn https_to_a_plain_http_receiver_is_a_tls_failure() {
    let receiver = Receiver::start().await;
    let url = Url::parse(&format!("https://{}/ok", receiver.addr)).expect("url");

    let outcome = sender(loopback_allowed()).send(request(url)).await;

    assert_no_response(&outcome, ErrorClass::Tls);
    assert!(receiver.received("/ok").is_empty());
}

#[tokio::test]
async fn an_unresolvable_host_is_a_dns_failure() {
    // `.invalid` never resolves (RFC 6761 §6.4).
    let url = Url::parse("http://herald-test.invalid/").expect("url");

    let outcome = sender(SsrfPolicy::default()).send(request(url)).await;

    assert_no_response(&outcome, ErrorClass::Dns);
}

#[tokio::test]
async fn loopback_is_blocked_with_status_0_unless_allow_listed() {
    let receiver = Receiver::start().await;
    let sender = sender(SsrfPolicy::default());

    for url in [
        receiver.url("/ok"),
        Url::parse(&format!(
            "http://[::ffff:127.0.0.1]:{}/ok",
            receiver.addr.port()
        ))
        .expect("url"),
        Url::parse(&format!("http://[::1]:{}/ok", receiver.addr.port())).expect("url"),
        Url::parse(&format!("http://localhost:{}/ok", receiver.addr.port())).expect("url"),
    ] {
        let outcome = sender.send(request(url.clone())).await;
        assert_no_response(&outcome, ErrorClass::Blocked);
        if url.host_str() == Some("localhost") {
            let detail = outcome.error_detail.as_deref().unwrap_or_default();
            assert!(
                !detail.contains("127.0.0.1") && !detail.contains("::1"),
                "resolved addresses are not revealed: {detail}"
            );
        }
    }
    assert!(receiver.received("/ok").is_empty());
}

#[tokio::test]
async fn localhost_is_refused_by_the_resolver_unless_loopback_is_allow_listed() {
    let name = || Name::from_str("localhost").expect("name");

    let strict = herald_worker::FilteringResolver::new(Arc::new(SsrfPolicy::default()));
    let error = match strict.resolve(name()).await {
        Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
        Err(error) => error,
    };
    assert!(
        matches!(
            error.downcast_ref::<herald_worker::ResolveError>(),
            Some(herald_worker::ResolveError::Blocked(_))
        ),
        "{error}"
    );

    let allowing = herald_worker::FilteringResolver::new(Arc::new(loopback_allowed()));
    let addrs: Vec<SocketAddr> = allowing.resolve(name()).await.expect("resolves").collect();
    assert!(!addrs.is_empty());
    assert!(
        addrs
            .iter()
            .all(|addr| addr.ip().is_loopback() && addr.is_ipv4()),
        "{addrs:?}"
    );
}

#[tokio::test]
async fn localhost_is_delivered_to_when_loopback_is_allow_listed() {
    let receiver = Receiver::start().await;
    let url = Url::parse(&format!("http://localhost:{}/ok", receiver.addr.port())).expect("url");

    let outcome = sender(loopback_allowed()).send(request(url)).await;

    assert!(outcome.success, "{outcome:?}");
    assert_eq!(receiver.received("/ok").len(), 1);
}

#[tokio::test]
async fn custom_headers_are_sent_but_cannot_override_herald_headers() {
    let receiver = Receiver::start().await;
    let mut request = request(receiver.url("/ok"));
    request.headers = BTreeMap::from([
        ("X-Tenant-Tag".to_owned(), "blue".to_owned()),
        (
            "Authorization".to_owned(),
            "Bearer receiver-token".to_owned(),
        ),
        ("Content-Type".to_owned(), "text/plain".to_owned()),
        ("webhook-signature".to_owned(), "v1,forged".to_owned()),
        ("Webhook-Id".to_owned(), "msg_forged".to_owned()),
        ("User-Agent".to_owned(), "curl".to_owned()),
        ("X-Herald-Event-Type".to_owned(), "forged".to_owned()),
        ("Content-Length".to_owned(), "1".to_owned()),
        ("bad header".to_owned(), "skipped".to_owned()),
    ]);
    let msg_id = request.msg_id.to_string();

    let outcome = sender(loopback_allowed()).send(request).await;

    assert!(outcome.success, "{outcome:?}");
    let received = receiver.received("/ok");
    let got = &received[0];
    assert_eq!(header(got, "x-tenant-tag"), Some("blue"));
    assert_eq!(header(got, "authorization"), Some("Bearer receiver-token"));
    assert_eq!(header(got, "content-type"), Some("application/json"));
    assert_eq!(header(got, "user-agent"), Some(DEFAULT_USER_AGENT));
    assert_eq!(header(got, "webhook-id"), Some(msg_id.as_str()));
    assert_eq!(header(got, "x-herald-event-type"), Some("invoice.paid"));
    for name in ["content-type", "webhook-signature", "webhook-id"] {
        assert_eq!(got.headers.get_all(name).iter().count(), 1, "{name}");
    }
    let signature = header(got, "webhook-signature").expect("signature");
    assert!(!signature.contains("forged"));
    let headers =
        standard::WebhookHeaders::from_lookup(|name| header(got, name)).expect("signature headers");
    let key = parse_secret(CURRENT).expect("secret");
    assert_eq!(
        standard::verify(&key, &headers, &got.body, standard::DEFAULT_TOLERANCE),
        Ok(())
    );
}

#[tokio::test]
async fn a_delivery_without_secrets_is_invalid_and_never_sent() {
    let receiver = Receiver::start().await;
    let mut request = request(receiver.url("/ok"));
    request.keys.clear();

    let outcome = sender(loopback_allowed()).send(request).await;

    assert_no_response(&outcome, ErrorClass::Invalid);
    assert!(receiver.received("/ok").is_empty());
}
