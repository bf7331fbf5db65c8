//! One delivery attempt: sign a message, POST it to an endpoint and classify
//! what happened.
//!
//! [`Sender`] owns one reqwest client, so connections to an endpoint are pooled
//! and kept alive across attempts. It never follows redirects, never uses a proxy
//! from the environment and connects only to addresses the [`SsrfPolicy`] allows.
//! A [`Sender::send`] never fails: every problem becomes an [`AttemptOutcome`]
//! with status 0 and an [`ErrorClass`], which is what the attempt log records.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use herald_core::ErrorClass;
use herald_core::{EndpointHeaders, EventTypeName, MessageId};
use herald_signature::{standard, SignatureScheme, SigningKey};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::{redirect, Response, StatusCode};
use url::Url;

use crate::ssrf::{Blocked, FilteringResolver, ResolveError, SsrfPolicy};

/// `Herald/<version>`, the default `User-Agent` of deliveries.
pub const DEFAULT_USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"));

/// The header carrying the message's event type, so a receiver can route before
/// parsing the body.
pub const EVENT_TYPE_HEADER: &str = "x-herald-event-type";

/// Headers an endpoint's custom headers may not set: the ones that frame the
/// request (RFC 9110 §7.6.1, RFC 9112 §6) and would corrupt it, and the prefixes
/// Herald signs under, so a receiver can trust them.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];
const RESERVED_PREFIXES: &[&str] = &["webhook-", "svix-", "x-herald-"];

/// How a [`Sender`] connects and what it keeps of responses.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The whole attempt — connect, TLS, request, response head and the kept
    /// part of the body — must finish within this.
    pub timeout: Duration,
    /// Which addresses may be connected to.
    pub ssrf: SsrfPolicy,
    /// The `User-Agent` header, normally [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// How many bytes of a response body are kept for the attempt log.
    pub max_response_body: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            ssrf: SsrfPolicy::default(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            max_response_body: 4096,
            pool_idle_per_host: 8,
        }
    }
}

/// A [`Sender`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderBuildError {
    /// The configured `User-Agent` is not a valid header value.
    #[error("user agent is not a valid header value")]
    UserAgent(#[source] reqwest::header::InvalidHeaderValue),
    /// reqwest refused the configuration (for example, no usable TLS roots).
    #[error("failed to build the http client")]
    Client(#[source] reqwest::Error),
}

/// Everything one attempt needs, already loaded from the store.
#[derive(Clone)]
pub struct DeliveryRequest {
    /// The endpoint's URL.
    pub url: Url,
    /// The message id: `webhook-id`, stable across retries so receivers can
    /// de-duplicate.
    pub msg_id: MessageId,
    /// The message's event type, sent as `X-Herald-Event-Type`.
    pub event_type: EventTypeName,
    /// Signing time in Unix seconds, normally now.
    pub timestamp: i64,
    /// The payload exactly as the tenant posted it.
    pub body: Vec<u8>,
    /// Every signing key valid now, current first.
    pub keys: Vec<SigningKey>,
    /// The endpoint's signature scheme.
    pub scheme: SignatureScheme,
    /// The endpoint's custom headers; they never replace Herald's own.
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for DeliveryRequest {
    // Secrets and custom headers (often credentials) stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryRequest")
            .field("url", &self.url.as_str())
            .field("msg_id", &self.msg_id)
            .field("event_type", &self.event_type)
            .field("timestamp", &self.timestamp)
            .field("body_len", &self.body.len())
            .field("keys", &self.keys.len())
            .field("scheme", &self.scheme.name())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What one attempt produced, ready to be recorded as a `message_attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The response status, 0 when there was no response.
    pub status_code: u16,
    /// Why the attempt failed; `None` exactly when it succeeded.
    pub error_class: Option<ErrorClass>,
    /// What Herald saw going wrong when there was no response (for operators;
    /// never includes resolved addresses). `None` when a response arrived.
    pub error_detail: Option<String>,
    /// The start of the response body as [`response_text`] keeps it: at most
    /// `max_response_body` bytes of UTF-8 with no NUL, so every store can hold it.
    pub response_body: String,
    /// The request's headers as the attempt log keeps them ([`headers_json`]);
    /// `None` when the attempt failed before they were built.
    pub request_headers: Option<String>,
    /// The response's headers, the same way; `None` without a response.
    pub response_headers: Option<String>,
    /// From just before the request until the kept body was read.
    pub duration: Duration,
    /// The receiver's `Retry-After` on a 429 or 503 (RFC 9110 §10.2.3).
    pub retry_after: Option<Duration>,
    /// A 2xx arrived. 3xx is a failure: redirects are not followed.
    pub success: bool,
}

impl AttemptOutcome {
    fn failed(class: ErrorClass, detail: String, started: Instant) -> Self {
        Self {
            status_code: 0,
            error_class: Some(class),
            error_detail: Some(detail),
            response_body: String::new(),
            request_headers: None,
            response_headers: None,
            duration: started.elapsed(),
            retry_after: None,
            success: false,
        }
    }
}

/// Most bytes of header names and values the attempt log keeps per request
/// or response; headers past it are left out.
const MAX_LOGGED_HEADER_BYTES: usize = 4096;
/// What the attempt log keeps of a sensitive header's value.
const REDACTED: &str = "[redacted]";

/// Headers as the attempt log keeps them: a JSON object of name → value, a
/// repeated name's values joined with ", ", credentials (the endpoint's
/// sensitive headers, cookies) redacted, at most [`MAX_LOGGED_HEADER_BYTES`].
pub fn headers_json(headers: &HeaderMap) -> String {
    let mut kept: BTreeMap<&str, String> = BTreeMap::new();
    let mut size = 0;
    for (name, value) in headers {
        let name = name.as_str();
        let value = if EndpointHeaders::is_sensitive(name) || name == "set-cookie" {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        size += name.len() + value.len();
        if size > MAX_LOGGED_HEADER_BYTES {
            break;
        }
        kept.entry(name)
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    serde_json::to_string(&kept).unwrap_or_else(|_| "{}".to_owned())
}

/// Sends delivery attempts over one pooled HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    ssrf: Arc<SsrfPolicy>,
    max_response_body: usize,
}

impl Sender {
    /// Builds the client: keep-alive pool, [`FilteringResolver`], no redirects,
    /// no proxy, the configured timeout and `User-Agent`.
    pub fn new(config: SenderConfig) -> Result<Self, SenderBuildError> {
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(SenderBuildError::UserAgent)?;
        let ssrf = Arc::new(config.ssrf);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .dns_resolver(Arc::new(FilteringResolver::new(Arc::clone(&ssrf))))
            // A redirect would be a second, unchecked request; Svix and Standard
            // Webhooks count 3xx as a failure too.
            .redirect(redirect::Policy::none())
            // HTTP(S)_PROXY from the environment would route around the SSRF
            // guard, which only sees the proxy's address.
            .no_proxy()
            // One send is one recorded attempt; Herald's retry schedule decides
            // what happens next.
            .retry(reqwest::retry::never())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(user_agent)
            .referer(false)
            .build()
            .map_err(SenderBuildError::Client)?;
        Ok(Self {
            client,
            ssrf,
            max_response_body: config.max_response_body,
        })
    }

    /// Makes one attempt. Never fails: every problem is an outcome.
    #[tracing::instrument(skip_all, fields(msg_id = %request.msg_id, host = request.url.host_str()))]
    pub async fn send(&self, request: DeliveryRequest) -> AttemptOutcome {
        let started = Instant::now();
        // reqwest skips the resolver for IP literals, so they are checked here.
        if let Err(blocked) = self.ssrf.check_url(&request.url) {
            tracing::debug!(%blocked, "delivery refused by the ssrf guard");
            return AttemptOutcome::failed(ErrorClass::Blocked, blocked.to_string(), started);
        }
        let headers = match build_headers(&request) {
            Ok(headers) => headers,
            Err(detail) => return AttemptOutcome::failed(ErrorClass::Invalid, detail, started),
        };
        let request_headers = headers_json(&headers);
        let sent = self
            .client
            .post(request.url)
            .headers(headers)
            .body(request.body)
            .send()
            .await;
        let mut outcome = match sent {
            Ok(response) => self.read(response, started).await,
            Err(error) => {
                let class = classify(&error);
                // reqwest's message names the URL, which the attempt log already
                // has next to it.
                AttemptOutcome::failed(class, error_detail(&error.without_url()), started)
            }
        };
        outcome.request_headers = Some(request_headers);
        tracing::debug!(
            status = outcome.status_code,
            error_class = outcome.error_class.map(ErrorClass::as_str),
            duration_ms = outcome.duration.as_millis(),
            "delivery attempt finished"
        );
        outcome
    }

    /// Turns a response into an outcome, keeping at most `max_response_body`
    /// bytes of its body.
    async fn read(&self, mut response: Response, started: Instant) -> AttemptOutcome {
        let status = response.status();
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now())),
            _ => None,
        };
        let response_headers = headers_json(response.headers());
        let mut body = Vec::new();
        while body.len() < self.max_response_body {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status is the receiver's answer; a body cut short (by the
                // timeout or a reset) does not change it, it only shortens the log.
                Err(error) => {
                    tracing::debug!(error = %error, "response body cut short");
                    break;
                }
            }
        }
        AttemptOutcome {
            status_code: status.as_u16(),
            error_class: ErrorClass::from_status(status.as_u16()),
            error_detail: None,
            response_body: response_text(&body, self.max_response_body),
            request_headers: None,
            response_headers: Some(response_headers),
            duration: started.elapsed(),
            retry_after,
            success: status.is_success(),
        }
    }
}

/// Herald's headers, then the endpoint's custom ones where they do not collide.
fn build_headers(request: &DeliveryRequest) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let signed = request
        .scheme
        .headers(
            &request.keys,
            request.msg_id.as_str(),
            request.timestamp,
            &request.body,
        )
        .map_err(|error| format!("failed to sign the message: {error}"))?;
    for (name, value) in signed {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("signature header name '{name}' is not valid"))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("signature header '{name}' has an invalid value"))?;
        headers.insert(name, value);
    }
    // Every scheme carries the stable message id, the receiver's idempotency key
    // (Standard Webhooks already put it there).
    let msg_id = HeaderValue::try_from(request.msg_id.as_str())
        .map_err(|_| "message id is not a valid header value".to_owned())?;
    headers
        .entry(HeaderName::from_static(standard::WEBHOOK_ID))
        .or_insert(msg_id);
    let event_type = HeaderValue::try_from(request.event_type.as_str())
        .map_err(|_| "event type is not a valid header value".to_owned())?;
    headers.insert(HeaderName::from_static(EVENT_TYPE_HEADER), event_type);

    for (name, value) in &request.headers {
        // The API validates custom headers; these checks keep a bad stored value
        // from ever replacing a signature or breaking the request framing.
        let Ok(name) = HeaderName::try_from(name.as_str()) else {
            tracing::warn!(header = %name, "custom header name is not valid, skipped");
            continue;
        };
        let lower = name.as_str();
        if headers.contains_key(&name)
            || name == USER_AGENT
            || FRAMING_HEADERS.contains(&lower)
            || RESERVED_PREFIXES
                .iter()
                .any(|prefix| lower.starts_with(prefix))
        {
            tracing::warn!(header = %name, "custom header would override herald's own, skipped");
            continue;
        }
        let Ok(value) = HeaderValue::try_from(value.as_str()) else {
            tracing::warn!(header = %name, "custom header value is not valid, skipped");
            continue;
        };
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, which
/// becomes the time from `now` until then (zero when it has passed).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Absurdly long digit strings do not fit; they are ignored like garbage.
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What the attempt log keeps of a response body: its first `max` bytes as
/// UTF-8 text. A receiver may answer with any bytes, but a stored text must be
/// valid UTF-8 without NUL (PostgreSQL's `TEXT` refuses U+0000), so invalid
/// sequences and NUL bytes alike become U+FFFD; the text is then cut at a
/// character boundary, so a replacement never pushes it past `max` bytes.
pub fn response_text(body: &[u8], max: usize) -> String {
    let kept = &body[..body.len().min(max)];
    let lossy = String::from_utf8_lossy(kept);
    // Only a body holding NUL pays for a second copy.
    let mut text = if lossy.contains('\0') {
        lossy.replace('\0', "\u{fffd}")
    } else {
        lossy.into_owned()
    };
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Classifies a reqwest error by walking its source chain: the resolver's own
/// error types tell `blocked` from `dns`, a `rustls::Error` means `tls`.
fn classify(error: &reqwest::Error) -> ErrorClass {
    let mut dns = false;
    let mut tls = false;
    for cause in chain(error) {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            match resolve {
                ResolveError::Blocked(_) => return ErrorClass::Blocked,
                ResolveError::Lookup { .. } => dns = true,
            }
        }
        if cause.downcast_ref::<Blocked>().is_some() {
            return ErrorClass::Blocked;
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
    }
    if error.is_timeout() {
        ErrorClass::Timeout
    } else if dns {
        ErrorClass::Dns
    } else if tls {
        ErrorClass::Tls
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ErrorClass::Connect
    } else if error.is_builder() {
        ErrorClass::Invalid
    } else {
        ErrorClass::Other
    }
}

/// A human description of a transport error: every message in the chain.
fn error_detail(error: &reqwest::Error) -> String {
    let mut detail = error.to_string();
    for cause in chain(error).skip(1) {
        let message = cause.to_string();
        if !detail.contains(&message) {
            detail.push_str(": ");
            detail.push_str(&message);
        }
    }
    detail
}

/// `error` and its sources. `io::Error::source` skips the error it wraps, so
/// that one is visited explicitly: tokio-rustls and hyper put theirs there.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static))
                .or_else(|| current.source()),
            None => current.source(),
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000; thirty seconds later:
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for garbage in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn response_text_keeps_text_and_cuts_at_the_limit() {
        assert_eq!(response_text(b"hello", 10), "hello");
        assert_eq!(response_text(b"hello", 3), "hel");
        assert_eq!(response_text("héllo ✓".as_bytes(), 64), "héllo ✓");
        assert_eq!(response_text(b"", 4), "");
    }

    #[test]
    fn response_text_replaces_nul_with_the_replacement_character() {
        assert_eq!(response_text(b"ok\0nul", 64), "ok\u{fffd}nul");
        assert_eq!(response_text(b"\0\0", 64), "\u{fffd}\u{fffd}");
        let text = response_text(&[0; 100], 64);
        assert!(!text.contains('\0'), "{text:?}");
        // A NUL is one byte, its replacement three: the limit still holds.
        assert_eq!(text.len(), 63);
    }

    #[test]
    fn response_text_replaces_invalid_utf8() {
        assert_eq!(response_text(&[0xff, 0xfe], 4), "\u{fffd}");
        assert_eq!(response_text(b"a\xc3(b", 64), "a\u{fffd}(b");
        // An encoded surrogate is not UTF-8 either.
        let surrogate = response_text(b"\xed\xa0\x80", 64);
        assert!(surrogate.chars().all(|c| c == '\u{fffd}'), "{surrogate:?}");
    }

    #[test]
    fn response_text_never_splits_a_character_at_the_limit() {
        // "é" is two bytes: cut after its first byte, the rest of it would be
        // a replacement character of three bytes, past the limit of two.
        assert_eq!(response_text("aé".as_bytes(), 2), "a");
        // "€" is three bytes; a limit inside it keeps only the whole ones.
        for max in 0..=7 {
            let whole = "€".repeat(max.min(6) / 3);
            assert_eq!(response_text("€€".as_bytes(), max), whole, "limit {max}");
        }
    }
}
