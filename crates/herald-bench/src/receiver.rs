//! The webhook receiver: a lean axum (hyper, keep-alive) server on loopback that
//! records when each delivery arrives, verifies its signature and answers as
//! the endpoint's [`Behaviour`] says.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hdrhistogram::Histogram;
use herald_signature::standard::{self, WebhookHeaders};
use serde::{Deserialize, Serialize, Serializer};
use tokio::net::TcpListener;

use crate::report::{latency_histogram, record_micros};
use crate::unix_micros;

/// How the receiver answers the deliveries to one endpoint; ordered as the
/// report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// `200` at once (`fast`).
    Fast,
    /// `200` after this many milliseconds (`delay:MS`).
    Delay(u64),
    /// `500` to the first N arrivals of each message, then `200` (`fail-first:N`).
    FailFirst(u32),
    /// `500` always (`fail`).
    AlwaysFail,
}

impl Behaviour {
    /// Whether deliveries to such an endpoint are expected to succeed.
    pub fn succeeds(self) -> bool {
        self != Behaviour::AlwaysFail
    }

    /// Whether the `nth` arrival (from 1) of a message is answered `200`.
    pub fn accepts(self, nth: u32) -> bool {
        match self {
            Behaviour::Fast | Behaviour::Delay(_) => true,
            Behaviour::FailFirst(n) => nth > n,
            Behaviour::AlwaysFail => false,
        }
    }
}

/// The spelling `--endpoint` takes, also used as the key in the report.
impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behaviour::Fast => write!(f, "fast"),
            Behaviour::Delay(ms) => write!(f, "delay:{ms}"),
            Behaviour::FailFirst(n) => write!(f, "fail-first:{n}"),
            Behaviour::AlwaysFail => write!(f, "fail"),
        }
    }
}

/// As its spelling, so it can key a JSON map.
impl Serialize for Behaviour {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "fast" => Ok(Behaviour::Fast),
            None if s == "fail" => Ok(Behaviour::AlwaysFail),
            Some(("delay", ms)) => Ok(Behaviour::Delay(whole(ms)?)),
            Some(("fail-first", n)) => Ok(Behaviour::FailFirst(whole(n)?)),
            _ => Err(format!(
                "unknown endpoint behaviour {s:?}: expected fast, delay:MS, fail-first:N or fail"
            )),
        }
    }
}

fn whole<T: FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

/// The payload every message carries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchPayload {
    seq: u64,
    sent_at_us: u64,
}

/// The arrivals of one (message, endpoint).
#[derive(Debug, Default, Clone, Copy)]
pub struct Arrivals {
    pub count: u32,
    /// Whether one of them was answered `200`: the delivery.
    pub delivered: bool,
}

/// What the receiver saw, behind one lock.
pub struct Recorded {
    /// Arrivals per (message seq, endpoint index).
    pub seen: HashMap<(u64, usize), Arrivals>,
    /// Every arrival, per endpoint index.
    pub arrivals: Vec<u64>,
    /// End-to-end latency of each delivery (first arrival answered `200`), in
    /// microseconds, per endpoint index.
    pub end_to_end: Vec<Histogram<u64>>,
    /// Deliveries of any message.
    pub delivered: u64,
    /// Arrivals after the delivery of the same (message, endpoint).
    pub duplicates: u64,
    /// Arrivals answered `500` because the endpoint's behaviour said so.
    pub error_answers: u64,
    pub signature_failures: u64,
    /// Bodies that are not a bench payload, or an unknown endpoint index.
    pub unreadable: u64,
    /// Unix microseconds of the latest delivery.
    pub last_arrival_us: u64,
}

impl Recorded {
    /// Records the arrival of message `seq` at endpoint `index`, sent at
    /// `sent_at_us`; returns whether to answer `200`.
    fn arrive(
        &mut self,
        index: usize,
        behaviour: Behaviour,
        seq: u64,
        sent_at_us: u64,
        arrival_us: u64,
    ) -> bool {
        self.arrivals[index] += 1;
        let entry = self.seen.entry((seq, index)).or_default();
        entry.count += 1;
        if !behaviour.accepts(entry.count) {
            self.error_answers += 1;
            return false;
        }
        if entry.delivered {
            self.duplicates += 1;
        } else {
            entry.delivered = true;
            self.delivered += 1;
            record_micros(
                &mut self.end_to_end[index],
                arrival_us.saturating_sub(sent_at_us),
            );
            self.last_arrival_us = self.last_arrival_us.max(arrival_us);
        }
        true
    }
}

pub struct Receiver {
    verify: bool,
    /// By endpoint index.
    behaviours: Vec<Behaviour>,
    /// Raw signing keys by endpoint index; set once the endpoints exist.
    secrets: OnceLock<Vec<Vec<u8>>>,
    pub recorded: Mutex<Recorded>,
}

impl Receiver {
    pub fn new(verify: bool, behaviours: Vec<Behaviour>) -> Arc<Self> {
        let endpoints = behaviours.len();
        Arc::new(Self {
            verify,
            behaviours,
            secrets: OnceLock::new(),
            recorded: Mutex::new(Recorded {
                seen: HashMap::new(),
                arrivals: vec![0; endpoints],
                end_to_end: (0..endpoints).map(|_| latency_histogram()).collect(),
                delivered: 0,
                duplicates: 0,
                error_answers: 0,
                signature_failures: 0,
                unreadable: 0,
                last_arrival_us: 0,
            }),
        })
    }

    pub fn set_secrets(&self, secrets: Vec<Vec<u8>>) {
        let _ = self.secrets.set(secrets);
    }

    /// Deliveries of `accepted` messages, and of any other message.
    pub fn delivered_of(&self, accepted: &HashSet<u64>) -> (u64, u64) {
        let recorded = self.recorded.lock().expect("receiver lock");
        let mut expected = 0;
        let mut unexpected = 0;
        for ((seq, _), arrivals) in &recorded.seen {
            if !arrivals.delivered {
                continue;
            }
            if accepted.contains(seq) {
                expected += 1;
            } else {
                unexpected += 1;
            }
        }
        (expected, unexpected)
    }

    /// Deliveries of any message.
    pub fn delivered(&self) -> u64 {
        self.recorded.lock().expect("receiver lock").delivered
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
    let behaviour = receiver.behaviours.get(index).copied();
    let accepted = {
        let mut recorded = receiver.recorded.lock().expect("receiver lock");
        if !signature_ok {
            recorded.signature_failures += 1;
        }
        match (payload, behaviour) {
            (Some(p), Some(behaviour)) => {
                recorded.arrive(index, behaviour, p.seq, p.sent_at_us, arrival_us)
            }
            _ => {
                recorded.unreadable += 1;
                return StatusCode::NOT_FOUND;
            }
        }
    };
    if !accepted {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(Behaviour::Delay(ms)) = behaviour {
        tokio::time::sleep(Duration::from_millis(ms)).await;
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

    #[test]
    fn behaviours_parse_and_print() {
        for spec in ["fast", "delay:1000", "fail-first:2", "fail"] {
            let behaviour: Behaviour = spec.parse().unwrap();
            assert_eq!(behaviour.to_string(), spec);
        }
        assert_eq!("delay:5".parse(), Ok(Behaviour::Delay(5)));
        assert!("slow".parse::<Behaviour>().is_err());
        assert!("delay:soon".parse::<Behaviour>().is_err());
        assert!("fail:3".parse::<Behaviour>().is_err());
    }

    #[test]
    fn which_arrivals_are_answered_200() {
        assert!(Behaviour::Fast.accepts(1));
        assert!(Behaviour::Delay(10).accepts(1));
        assert!(!Behaviour::AlwaysFail.accepts(1));
        assert!(!Behaviour::AlwaysFail.accepts(9));
        let twice = Behaviour::FailFirst(2);
        assert_eq!(
            (1..=4).map(|n| twice.accepts(n)).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        assert!(!Behaviour::AlwaysFail.succeeds());
        assert!(Behaviour::FailFirst(3).succeeds());
    }

    #[test]
    fn only_the_first_200_is_the_delivery() {
        let receiver = Receiver::new(false, vec![Behaviour::FailFirst(1), Behaviour::AlwaysFail]);
        let mut r = receiver.recorded.lock().unwrap();
        let fail_first = Behaviour::FailFirst(1);
        // Endpoint 0: a 500, then the delivery, then a duplicate.
        assert!(!r.arrive(0, fail_first, 1, 1_000, 2_000));
        assert!(r.arrive(0, fail_first, 1, 1_000, 5_000));
        assert!(r.arrive(0, fail_first, 1, 1_000, 9_000));
        // Endpoint 1 never delivers: failed arrivals are neither deliveries
        // nor duplicates.
        assert!(!r.arrive(1, Behaviour::AlwaysFail, 1, 1_000, 3_000));
        assert!(!r.arrive(1, Behaviour::AlwaysFail, 1, 1_000, 4_000));
        assert_eq!((r.delivered, r.duplicates, r.error_answers), (1, 1, 3));
        assert_eq!(r.arrivals, [3, 2]);
        // Latency of the delivery: its arrival − the send time.
        assert_eq!(r.end_to_end[0].len(), 1);
        assert!(r.end_to_end[0].equivalent(r.end_to_end[0].max(), 4_000));
        assert!(r.end_to_end[1].is_empty());
        assert_eq!(r.last_arrival_us, 5_000);
        drop(r);
        assert_eq!(receiver.delivered_of(&HashSet::from([1])), (1, 0));
        assert_eq!(receiver.delivered_of(&HashSet::new()), (0, 1));
    }
}
