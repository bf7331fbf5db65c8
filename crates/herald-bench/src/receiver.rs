//! The webhook receiver: a lean axum (hyper, keep-alive) server on loopback that
//! records when each delivery arrives, verifies its signature and answers 200.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hdrhistogram::Histogram;
use herald_signature::standard::{self, WebhookHeaders};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::report::{latency_histogram, record_micros};
use crate::unix_micros;

/// The payload every message carries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchPayload {
    seq: u64,
    sent_at_us: u64,
}

/// What the receiver saw, behind one lock.
pub struct Recorded {
    /// Arrivals per (message seq, endpoint index).
    pub seen: HashMap<(u64, usize), u32>,
    /// End-to-end latency of first arrivals, in microseconds.
    pub end_to_end: Histogram<u64>,
    pub duplicates: u64,
    pub signature_failures: u64,
    /// Bodies that are not a bench payload, or an unknown endpoint index.
    pub unreadable: u64,
    /// Unix microseconds of the latest first arrival.
    pub last_arrival_us: u64,
}

pub struct Receiver {
    verify: bool,
    /// Raw signing keys by endpoint index; set once the endpoints exist.
    secrets: OnceLock<Vec<Vec<u8>>>,
    pub recorded: Mutex<Recorded>,
}

impl Receiver {
    pub fn new(verify: bool) -> Arc<Self> {
        Arc::new(Self {
            verify,
            secrets: OnceLock::new(),
            recorded: Mutex::new(Recorded {
                seen: HashMap::new(),
                end_to_end: latency_histogram(),
                duplicates: 0,
                signature_failures: 0,
                unreadable: 0,
                last_arrival_us: 0,
            }),
        })
    }

    pub fn set_secrets(&self, secrets: Vec<Vec<u8>>) {
        let _ = self.secrets.set(secrets);
    }

    /// Distinct (message, endpoint) arrivals among `accepted` messages.
    pub fn delivered_of(&self, accepted: &HashSet<u64>) -> (u64, u64) {
        let recorded = self.recorded.lock().expect("receiver lock");
        let mut expected = 0;
        let mut unexpected = 0;
        for (seq, _) in recorded.seen.keys() {
            if accepted.contains(seq) {
                expected += 1;
            } else {
                unexpected += 1;
            }
        }
        (expected, unexpected)
    }

    /// Distinct arrivals of any message.
    pub fn distinct(&self) -> usize {
        self.recorded.lock().expect("receiver lock").seen.len()
    }

    fn signature_ok(&self, index: usize, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(secret) = self.secrets.get().and_then(|s| s.get(index)) else {
            return false;
        };
        let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match WebhookHeaders::from_lookup(lookup) {
            Ok(found) => {
                standard::verify(secret, &found, body, standard::DEFAULT_TOLERANCE).is_ok()
            }
            Err(_) => false,
        }
    }
}

async fn deliver(
    State(receiver): State<Arc<Receiver>>,
    Path(index): Path<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrival_us = unix_micros();
    let signature_ok = !receiver.verify || receiver.signature_ok(index, &headers, &body);
    let payload = parse_payload(&body);
    let mut recorded = receiver.recorded.lock().expect("receiver lock");
    if !signature_ok {
        recorded.signature_failures += 1;
    }
    match payload {
        Some(p) => {
            let count = recorded.seen.entry((p.seq, index)).or_insert(0);
            *count += 1;
            if *count == 1 {
                let latency = arrival_us.saturating_sub(p.sent_at_us);
                record_micros(&mut recorded.end_to_end, latency);
                recorded.last_arrival_us = recorded.last_arrival_us.max(arrival_us);
            } else {
                recorded.duplicates += 1;
            }
        }
        None => recorded.unreadable += 1,
    }
    StatusCode::OK
}

/// The bench payload of a delivery: Herald (like Svix) sends the message's
/// `payload` as the body.
fn parse_payload(body: &[u8]) -> Option<BenchPayload> {
    serde_json::from_slice(body).ok()
}

/// Binds `addr` and serves the receiver in the background; returns the bound
/// address.
pub async fn start(receiver: Arc<Receiver>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/e/{index}", post(deliver))
        .with_state(receiver);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("receiver stopped: {err}");
        }
    });
    Ok(bound)
}

/// How often the waiting loop polls the receiver.
pub const POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bench_payload() {
        let p = parse_payload(br#"{"seq": 7, "sentAtUs": 123, "pad": "x"}"#).unwrap();
        assert_eq!((p.seq, p.sent_at_us), (7, 123));
        assert!(parse_payload(b"not json").is_none());
    }
}
