//! The results of a run: percentiles from HdrHistograms, the JSON shape and the
//! human table. Pure, so it is unit tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records, in microseconds (one hour); longer
/// values are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds with three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records `micros` into `hist`, clamped to the histogram's range.
pub fn record_micros(hist: &mut Histogram<u64>, micros: u64) {
    hist.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// Reads a histogram of microseconds; all zero when it is empty.
    pub fn from_micros(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self {
                count: 0,
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        Self {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p95_ms: ms(hist.value_at_quantile(0.95)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
            mean_ms: round3(hist.mean() / 1000.0),
        }
    }
}

/// Rounds to three decimals, so the JSON stays readable.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `count` events over `secs` seconds; zero for an empty interval.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round3(count as f64 / secs)
    } else {
        0.0
    }
}

/// Everything one run measured; serialised as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub server_url: String,
    pub scenario: String,
    pub endpoints: usize,
    pub concurrency: usize,
    pub verify_signatures: bool,
    /// From the first send to the last API answer.
    pub send_secs: f64,
    pub messages_sent: u64,
    pub messages_accepted: u64,
    pub api_errors: u64,
    /// API errors by kind (`http 503`, `transport`, …).
    pub api_error_kinds: BTreeMap<String, u64>,
    pub accept_throughput_per_sec: f64,
    pub api_latency: Percentiles,
    /// Accepted messages × endpoints.
    pub deliveries_expected: u64,
    /// Distinct (message, endpoint) deliveries of accepted messages.
    pub deliveries_received: u64,
    /// From the first send to the last delivery's arrival.
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    /// Send start → receiver arrival, first arrival of each delivery.
    pub end_to_end_latency: Percentiles,
    /// Arrivals beyond the first for the same (message, endpoint).
    pub duplicates: u64,
    pub missing_deliveries: u64,
    /// Deliveries of messages whose API call did not succeed, or unreadable bodies.
    pub unexpected_deliveries: u64,
    pub signature_failures: u64,
    /// Whether the deadline passed before every expected delivery arrived.
    pub deadline_reached: bool,
}

/// The human-readable table of a report.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<28} {value}");
    };
    row(
        "scenario",
        format!(
            "{} ({} endpoint{}, concurrency {})",
            r.scenario,
            r.endpoints,
            if r.endpoints == 1 { "" } else { "s" },
            r.concurrency
        ),
    );
    row("server", r.server_url.clone());
    row(
        "messages sent / accepted",
        format!(
            "{} / {} in {:.2} s",
            r.messages_sent, r.messages_accepted, r.send_secs
        ),
    );
    row(
        "API accept throughput",
        format!("{:.1} msg/s", r.accept_throughput_per_sec),
    );
    row("API latency (ms)", percentile_line(&r.api_latency));
    row("API errors", errors_line(r.api_errors, &r.api_error_kinds));
    row(
        "deliveries received",
        format!(
            "{} / {} expected in {:.2} s",
            r.deliveries_received, r.deliveries_expected, r.delivery_secs
        ),
    );
    row("deliveries/s", format!("{:.1}", r.deliveries_per_sec));
    row(
        "end-to-end latency (ms)",
        percentile_line(&r.end_to_end_latency),
    );
    row("duplicates", r.duplicates.to_string());
    row(
        "missing deliveries",
        format!(
            "{}{}",
            r.missing_deliveries,
            if r.deadline_reached {
                " (deadline reached)"
            } else {
                ""
            }
        ),
    );
    row("unexpected deliveries", r.unexpected_deliveries.to_string());
    row(
        "signature failures",
        if r.verify_signatures {
            r.signature_failures.to_string()
        } else {
            "not verified".to_owned()
        },
    );
    out
}

fn percentile_line(p: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  (n={})",
        p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.count
    )
}

fn errors_line(total: u64, kinds: &BTreeMap<String, u64>) -> String {
    if kinds.is_empty() {
        return total.to_string();
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    format!("{total} ({})", detail.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut hist = latency_histogram();
        // 1..=1000 ms, once each.
        for ms in 1..=1000u64 {
            record_micros(&mut hist, ms * 1000);
        }
        let p = Percentiles::from_micros(&hist);
        assert_eq!(p.count, 1000);
        // Three significant digits: within 0.1 %.
        assert!((p.p50_ms - 500.0).abs() <= 0.5, "{p:?}");
        assert!((p.p95_ms - 950.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_ms - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_ms - 1000.0).abs() <= 1.0, "{p:?}");
        assert!((p.mean_ms - 500.5).abs() <= 0.5, "{p:?}");
    }

    #[test]
    fn empty_histogram_and_out_of_range_values() {
        let mut hist = latency_histogram();
        assert_eq!(Percentiles::from_micros(&hist).count, 0);
        assert_eq!(Percentiles::from_micros(&hist).p99_ms, 0.0);
        record_micros(&mut hist, 0);
        record_micros(&mut hist, u64::MAX);
        let p = Percentiles::from_micros(&hist);
        assert_eq!(p.count, 2);
        assert!(p.max_ms >= 3_599_000.0, "{p:?}");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(3, 2.0), 1.5);
        assert_eq!(rate(1, 3.0), 0.333);
    }

    fn sample() -> Report {
        let mut hist = latency_histogram();
        record_micros(&mut hist, 2_000);
        let latency = Percentiles::from_micros(&hist);
        Report {
            server_url: "http://127.0.0.1:8080".into(),
            scenario: "fanout".into(),
            endpoints: 10,
            concurrency: 32,
            verify_signatures: true,
            send_secs: 2.0,
            messages_sent: 101,
            messages_accepted: 100,
            api_errors: 1,
            api_error_kinds: BTreeMap::from([("http 503".to_owned(), 1)]),
            accept_throughput_per_sec: 50.0,
            api_latency: latency,
            deliveries_expected: 1000,
            deliveries_received: 999,
            delivery_secs: 2.5,
            deliveries_per_sec: 399.6,
            end_to_end_latency: latency,
            duplicates: 0,
            missing_deliveries: 1,
            unexpected_deliveries: 0,
            signature_failures: 0,
            deadline_reached: true,
        }
    }

    #[test]
    fn table_names_every_figure() {
        let table = render_table(&sample());
        for expected in [
            "fanout (10 endpoints, concurrency 32)",
            "101 / 100 in 2.00 s",
            "50.0 msg/s",
            "p50 2.00  p95 2.00  p99 2.00  max 2.00  (n=1)",
            "1 (http 503: 1)",
            "999 / 1000 expected",
            "399.6",
            "1 (deadline reached)",
        ] {
            assert!(table.contains(expected), "{expected:?} not in\n{table}");
        }
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["messages_accepted"], 100);
        assert_eq!(json["api_latency"]["p99_ms"], 2.0);
        assert_eq!(json["end_to_end_latency"]["count"], 1);
        assert_eq!(json["api_error_kinds"]["http 503"], 1);
        assert_eq!(json["signature_failures"], 0);
    }
}
