//! Prometheus metrics: the process-wide recorder, the `/metrics` route, and
//! the middleware that counts HTTP requests.
//!
//! Every label is bounded: HTTP methods, route *templates* (axum's
//! [`MatchedPath`], `unmatched` for the 404 fallback), status codes and
//! outcome classes. A tenant, application, endpoint or message id is never a
//! label, so the number of series does not grow with the data.
//!
//! The recorder is installed once per process ([`install`]); every crate
//! records through the `metrics` macros, and `/metrics` renders the text
//! exposition format. The exporter's own HTTP listener is not used.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of every histogram (seconds): HTTP requests and delivery attempts.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];

/// HTTP requests rarely take seconds; finer buckets where they fall.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub const HTTP_REQUESTS: &str = "herald_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "herald_http_request_duration_seconds";
pub const MESSAGES_ACCEPTED: &str = "herald_messages_accepted_total";
pub const ACCEPT_BATCHES: &str = "herald_accept_batches_total";
pub const MESSAGES_RATE_LIMITED: &str = "herald_messages_rate_limited_total";
pub const INGEST_RECEIVED: &str = "herald_ingest_received_total";
pub const INGEST_REJECTED: &str = "herald_ingest_rejected_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), HTTP_BUCKETS)
        })
        .expect("the bucket lists are not empty")
}

/// Installs the process-wide Prometheus recorder on the first call and
/// returns its handle; later calls return the same handle, so tests and
/// several roles in one process never install twice.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = match builder().install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                // Another recorder owns the process (an embedding program):
                // /metrics then shows nothing rather than failing.
                tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics will be empty");
                builder().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered by the API, by method, route template and status"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an API request, by method and route template"
    );
    metrics::describe_counter!(
        MESSAGES_ACCEPTED,
        "Messages stored for delivery (created, or sent as examples)"
    );
    metrics::describe_counter!(
        ACCEPT_BATCHES,
        "Transactions that stored posted messages (group commit): messages accepted / batches is the mean batch size"
    );
    metrics::describe_counter!(
        MESSAGES_RATE_LIMITED,
        "Messages refused with 429 because their tenant was over HERALD_TENANT_MESSAGE_RATE"
    );
    metrics::describe_counter!(
        INGEST_RECEIVED,
        "Inbound webhooks verified on /ingest, by provider and outcome (stored, duplicate, challenge)"
    );
    metrics::describe_counter!(
        INGEST_REJECTED,
        "Inbound webhooks refused on /ingest, by provider (unknown for an unknown source) and reason"
    );
}

/// Registers the API's unlabelled series at zero, so they are scraped (and
/// `rate()` works) before the first message arrives.
pub fn register() {
    install();
    metrics::counter!(MESSAGES_ACCEPTED).increment(0);
    metrics::counter!(ACCEPT_BATCHES).increment(0);
    metrics::counter!(MESSAGES_RATE_LIMITED).increment(0);
}

/// Counts a message refused for its tenant's rate.
pub fn message_rate_limited() {
    metrics::counter!(MESSAGES_RATE_LIMITED).increment(1);
}

/// Counts a transaction of the accept batcher (of `_size` messages).
pub fn accept_batch(_size: usize) {
    metrics::counter!(ACCEPT_BATCHES).increment(1);
}

/// Counts a verified inbound webhook: `outcome` is `stored`, `duplicate`
/// or `challenge`.
pub fn ingest_received(provider: &'static str, outcome: &'static str) {
    metrics::counter!(INGEST_RECEIVED, "provider" => provider, "outcome" => outcome).increment(1);
}

/// Counts an inbound webhook refused for `reason` (a fixed set, see
/// `ingest.rs`); `provider` is `unknown` when the source is.
pub fn ingest_rejected(provider: &'static str, reason: &'static str) {
    metrics::counter!(INGEST_REJECTED, "provider" => provider, "reason" => reason).increment(1);
}

/// Counts a message stored for delivery.
pub fn message_accepted() {
    metrics::counter!(MESSAGES_ACCEPTED).increment(1);
}

/// Renders every series in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Runs the recorder's upkeep (draining histogram samples) until `stop`
/// resolves, so memory stays bounded between scrapes.
pub async fn run_upkeep(stop: impl std::future::Future<Output = ()>) {
    let handle = install();
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            _ = &mut stop => return,
        }
    }
}

/// The `/metrics` route. With `token`, a scrape must send
/// `Authorization: Bearer <token>`; without, it is open.
pub fn routes<S>(token: Option<String>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let token: Option<Arc<str>> = token.map(Into::into);
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let token = token.clone();
            async move { scrape(token.as_deref(), &headers) }
        }),
    )
}

/// What a process without the API serves on `HERALD_METRICS_ADDR`:
/// `/metrics` and a `/health` that answers 200 while the process runs.
pub fn standalone_router(token: Option<String>) -> Router {
    routes(token)
        .route("/health", get(|| async { StatusCode::OK }))
        .fallback(crate::error::not_found)
}

fn scrape(token: Option<&str>, headers: &HeaderMap) -> Response {
    if let Some(expected) = token {
        let header = match crate::auth::authorization(headers) {
            Ok(header) => header,
            Err(error) => return error.into_response(),
        };
        let given = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let allowed = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
        if !allowed {
            return ApiError::Unauthorized("invalid or missing metrics token".into())
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()).into_response()
}

/// The method as a label: the standard ones by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware counting and timing every request by method, route template
/// and status. Must be applied with `Router::layer` after the routes and the
/// fallback are added, so the matched path is known.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_returns_the_same_recorder() {
        let first: *const PrometheusHandle = install();
        let second: *const PrometheusHandle = install();
        assert_eq!(first, second);
        message_accepted();
        assert!(render().contains(MESSAGES_ACCEPTED));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "other");
    }
}
