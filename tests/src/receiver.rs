//! A real webhook receiver for the tests: an HTTP server on 127.0.0.1 that
//! answers each path with a scripted sequence of statuses (optionally after a
//! fixed delay, optionally with a body of any bytes) and records every request
//! it gets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// The value of header `name`, or "" when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Whether the request carries a valid Standard Webhooks signature by
    /// `key` among any others: a `whsec_` secret (`v1`) or a `whpk_` public key
    /// (`v1a`), as the API shows them.
    pub fn signed_by(&self, key: &str) -> bool {
        self.verify(&herald_signature::SignatureScheme::Standard, key)
            .is_ok()
    }

    /// Verifies the request as a receiver of `scheme` holding `key` would.
    pub fn verify(
        &self,
        scheme: &herald_signature::SignatureScheme,
        key: &str,
    ) -> Result<(), herald_signature::SignatureError> {
        let key = herald_signature::VerifyingKey::parse(key)?;
        scheme.verify(
            &key,
            |name| self.headers.get(name).and_then(|v| v.to_str().ok()),
            &self.body,
            Duration::from_secs(300),
        )
    }
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, Vec<u16>>,
    delays: HashMap<String, Duration>,
    plans: HashMap<String, Vec<(u16, Duration)>>,
    bodies: HashMap<String, Bytes>,
    response_headers: HashMap<String, HeaderMap>,
    received: Vec<Received>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let address = listener.local_addr().expect("receiver address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{address}"),
            inner,
            task,
        }
    }

    /// Answers `path` with these statuses in turn, repeating the last one
    /// (unscripted paths answer 200).
    pub fn script(&self, path: &str, statuses: &[u16]) {
        self.lock()
            .scripts
            .insert(path.to_owned(), statuses.to_vec());
    }

    /// Answers every request on `path` only after `delay` (a slow endpoint).
    /// The request is recorded when it arrives, before the delay.
    pub fn delay(&self, path: &str, delay: Duration) {
        self.lock().delays.insert(path.to_owned(), delay);
    }

    /// Answers the n-th request on `path` with entry `n % plan.len()`: a
    /// status after a delay (an endpoint with a known latency distribution).
    pub fn plan(&self, path: &str, plan: &[(u16, Duration)]) {
        self.lock().plans.insert(path.to_owned(), plan.to_vec());
    }

    /// Answers every request on `path` with this body (any bytes; empty
    /// unless set).
    pub fn body(&self, path: &str, body: &[u8]) {
        self.lock()
            .bodies
            .insert(path.to_owned(), Bytes::copy_from_slice(body));
    }

    /// Answers every request on `path` with these headers too (for example
    /// `Retry-After`).
    pub fn response_headers(&self, path: &str, headers: &[(&str, &str)]) {
        let map = headers
            .iter()
            .map(|(name, value)| {
                (
                    axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    axum::http::HeaderValue::from_str(value).expect("header value"),
                )
            })
            .collect();
        self.lock().response_headers.insert(path.to_owned(), map);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    /// Requests received on `path` so far.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (at most `limit`) until `path` has received `count` requests.
    pub async fn wait_for(&self, path: &str, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let received = self.received(path);
            if received.len() >= count || Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let (status, delay, answer, response_headers) = {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        let seen = inner.received.iter().filter(|r| r.path == path).count();
        let answer = inner.bodies.get(&path).cloned().unwrap_or_default();
        let response_headers = inner
            .response_headers
            .get(&path)
            .cloned()
            .unwrap_or_default();
        inner.received.push(Received {
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
        });
        if let Some(plan) = inner.plans.get(&path).filter(|p| !p.is_empty()) {
            let (status, delay) = plan[seen % plan.len()];
            (status, Some(delay), answer, response_headers)
        } else {
            let status = match inner.scripts.get(&path) {
                Some(script) if !script.is_empty() => script[seen.min(script.len() - 1)],
                _ => 200,
            };
            (
                status,
                inner.delays.get(&path).copied(),
                answer,
                response_headers,
            )
        }
    };
    // Not under the lock: other requests are received while this one waits.
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        response_headers,
        answer,
    )
}
