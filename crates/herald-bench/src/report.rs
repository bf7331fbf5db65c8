//! The results of a run: percentiles from HdrHistograms, the JSON shape and the
//! human table. Pure, so it is unit tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::{CpuKind, CpuReport};
use crate::pgbench::PgbenchReport;
use crate::receiver::Behaviour;
use crate::rss::MemoryReport;

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
    /// `single`, `fanout`, `fanout8`, `mixed`, or `custom` (`--endpoint`).
    pub scenario: String,
    pub endpoints: usize,
    /// Endpoints per receiver behaviour (`fast`, `delay:MS`, `fail-first:N`, `fail`).
    pub endpoint_behaviours: BTreeMap<Behaviour, usize>,
    /// Closed-loop senders; the pgbench clients. Not used to send in the open loop.
    pub concurrency: usize,
    /// Open loop: the fixed send rate; `None` for the closed loop.
    pub target_rate_per_sec: Option<f64>,
    /// Open loop: the most API calls outstanding at once.
    pub max_in_flight: Option<usize>,
    /// Open loop: sends skipped because `max_in_flight` calls were outstanding.
    pub sends_skipped: u64,
    pub verify_signatures: bool,
    /// From the first send to the last API answer.
    pub send_secs: f64,
    pub messages_sent: u64,
    pub messages_accepted: u64,
    pub api_errors: u64,
    /// API errors by kind (`http 503`, `transport`, …).
    pub api_error_kinds: BTreeMap<String, u64>,
    pub accept_throughput_per_sec: f64,
    /// From the send start (open loop: the intended send time) to the answer.
    pub api_latency: Percentiles,
    /// Accepted messages × endpoints expected to succeed (all but `fail`).
    pub deliveries_expected: u64,
    /// Distinct (message, endpoint) deliveries of accepted messages.
    pub deliveries_received: u64,
    /// From the first send to the last delivery's arrival.
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    /// Send start (open loop: intended send time) → receiver arrival, of each
    /// delivery (first arrival answered 200).
    pub end_to_end_latency: Percentiles,
    /// The same, per endpoint behaviour.
    pub end_to_end_by_behaviour: BTreeMap<Behaviour, Percentiles>,
    /// Arrivals after the delivery of the same (message, endpoint).
    pub duplicates: u64,
    pub missing_deliveries: u64,
    /// Deliveries of messages whose API call did not succeed, or unreadable bodies.
    pub unexpected_deliveries: u64,
    /// Arrivals the receiver answered 500 because the endpoint's behaviour said so.
    pub error_answers: u64,
    /// Arrivals at `fail` endpoints (included in `error_answers`).
    pub failing_endpoint_attempts: u64,
    pub signature_failures: u64,
    /// Whether the deadline passed before every expected delivery arrived.
    pub deadline_reached: bool,
    /// Memory of the `--server-pid` processes.
    pub server_memory: Option<MemoryReport>,
    /// CPU time of the `--server-pid`, `--cpu-pid` and `--cpu-pid-tree`
    /// processes and of the whole machine, from the start of the load to the
    /// end of the wait for deliveries, and per message and per delivery.
    pub cpu: CpuReport,
    /// The `--pgbench-url` reference ceiling, measured before the load.
    pub pgbench: Option<PgbenchReport>,
}

/// The human-readable table of a report.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<34} {value}");
    };
    let behaviours: Vec<String> = r
        .endpoint_behaviours
        .iter()
        .map(|(behaviour, n)| format!("{n}× {behaviour}"))
        .collect();
    row(
        "scenario",
        format!(
            "{} ({} endpoint{}: {})",
            r.scenario,
            r.endpoints,
            if r.endpoints == 1 { "" } else { "s" },
            behaviours.join(", ")
        ),
    );
    row(
        "load",
        match (r.target_rate_per_sec, r.max_in_flight) {
            (Some(rate), Some(cap)) => format!(
                "open loop, {rate} msg/s, at most {cap} in flight ({} sends skipped); \
                 latencies from intended send times",
                r.sends_skipped
            ),
            _ => format!("closed loop, {} senders", r.concurrency),
        },
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
    if r.endpoint_behaviours.len() > 1 {
        for (behaviour, latency) in &r.end_to_end_by_behaviour {
            row(
                &format!("{behaviour} endpoints e2e (ms)"),
                percentile_line(latency),
            );
        }
    }
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
    if r.endpoint_behaviours.keys().any(|b| !b.accepts(1)) {
        row("answered 500 on purpose", r.error_answers.to_string());
    }
    if r.endpoint_behaviours.contains_key(&Behaviour::AlwaysFail) {
        row(
            "failing endpoint attempts received",
            r.failing_endpoint_attempts.to_string(),
        );
    }
    row(
        "signature failures",
        if r.verify_signatures {
            r.signature_failures.to_string()
        } else {
            "not verified".to_owned()
        },
    );
    if let Some(memory) = &r.server_memory {
        for p in &memory.processes {
            row(
                &format!("server pid {} peak RSS", p.pid),
                format!(
                    "{} (VmHWM {}){}",
                    mb(p.peak_rss_kb),
                    p.hwm_kb.map_or("n/a".to_owned(), mb),
                    if p.gone { ", gone during the run" } else { "" }
                ),
            );
        }
        row(
            "server peak RSS, summed",
            format!(
                "{} ({} samples)",
                mb(memory.peak_rss_sum_kb),
                memory.samples
            ),
        );
    }
    for p in &r.cpu.processes {
        let kind = match p.kind {
            CpuKind::Server => "server",
            CpuKind::CpuPid => "cpu-pid",
            CpuKind::CpuPidTree => "cpu-pid-tree",
        };
        let mut detail = vec![p.name.clone().unwrap_or_else(|| "not running".to_owned())];
        if let (Some(n), Some(exited)) = (p.tree_processes, p.tree_exited) {
            detail.push(format!("{n} processes, {exited} exited"));
        }
        row(
            &format!("{kind} pid {} CPU", p.pid),
            match p.cpu_secs {
                Some(secs) => format!("{secs:.2} s ({})", detail.join(", ")),
                None => format!("n/a: gone during the run ({})", detail.join(", ")),
            },
        );
    }
    let has = |kinds: &[CpuKind]| r.cpu.processes.iter().any(|p| kinds.contains(&p.kind));
    if has(&[CpuKind::Server]) {
        row(
            "server CPU, summed",
            format!(
                "{:.2} s, {} ms/msg",
                r.cpu.server_cpu_secs,
                ms(r.cpu.server_ms_per_message)
            ),
        );
    }
    if has(&[CpuKind::CpuPid, CpuKind::CpuPidTree]) {
        row(
            "other processes' CPU, summed",
            format!(
                "{:.2} s, {} ms/msg",
                r.cpu.extra_cpu_secs,
                ms(r.cpu.extra_ms_per_message)
            ),
        );
    }
    if !r.cpu.processes.is_empty() {
        row(
            "server + other processes' CPU",
            format!(
                "{:.2} s, {} ms/msg, {} ms/delivery",
                r.cpu.total_cpu_secs,
                ms(r.cpu.total_ms_per_message),
                ms(r.cpu.total_ms_per_delivery)
            ),
        );
    }
    if let Some(machine) = &r.cpu.machine {
        row(
            "machine busy CPU",
            format!(
                "{:.2} s, {} ms/msg, {} ms/delivery ({:.1}% of {} cpus over {:.2} s)",
                machine.busy_cpu_secs,
                ms(machine.ms_per_message),
                ms(machine.ms_per_delivery),
                machine.busy_percent,
                machine.cpus,
                r.cpu.window_secs
            ),
        );
    }
    if let Some(secs) = r.cpu.bench_cpu_secs {
        row("herald-bench's own CPU", format!("{secs:.2} s"));
    }
    if let Some(pg) = &r.pgbench {
        row(
            "pgbench two-insert tx/s",
            format!(
                "{:.1} ({} clients, {} s, {} B payload)",
                pg.two_insert_tps, pg.clients, pg.seconds, pg.payload_bytes
            ),
        );
        row(
            "pgbench one-insert tx/s",
            format!("{:.1}", pg.one_insert_tps),
        );
        if let Some(fraction) = pg.accept_fraction_of_two_insert {
            row("accepted msg/s ÷ two-insert tx/s", format!("{fraction:.3}"));
        }
    }
    out
}

/// Milliseconds per message or delivery; `n/a` when there were none.
fn ms(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |ms| format!("{ms:.3}"))
}

/// Kilobytes as megabytes (MiB).
fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
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
    use crate::cpu::{MachineCpu, ProcessCpu};
    use crate::rss::ProcessMemory;

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
            scenario: "mixed".into(),
            endpoints: 10,
            endpoint_behaviours: BTreeMap::from([
                (Behaviour::Fast, 8),
                (Behaviour::Delay(1000), 1),
                (Behaviour::AlwaysFail, 1),
            ]),
            concurrency: 32,
            target_rate_per_sec: Some(200.0),
            max_in_flight: Some(1024),
            sends_skipped: 3,
            verify_signatures: true,
            send_secs: 2.0,
            messages_sent: 101,
            messages_accepted: 100,
            api_errors: 1,
            api_error_kinds: BTreeMap::from([("http 503".to_owned(), 1)]),
            accept_throughput_per_sec: 50.0,
            api_latency: latency,
            deliveries_expected: 900,
            deliveries_received: 899,
            delivery_secs: 2.5,
            deliveries_per_sec: 359.6,
            end_to_end_latency: latency,
            end_to_end_by_behaviour: BTreeMap::from([
                (Behaviour::Fast, latency),
                (Behaviour::Delay(1000), latency),
            ]),
            duplicates: 0,
            missing_deliveries: 1,
            unexpected_deliveries: 0,
            error_answers: 250,
            failing_endpoint_attempts: 250,
            signature_failures: 0,
            deadline_reached: true,
            server_memory: Some(MemoryReport {
                processes: vec![ProcessMemory {
                    pid: 42,
                    peak_rss_kb: 51_200,
                    hwm_kb: Some(61_440),
                    gone: false,
                }],
                peak_rss_sum_kb: 51_200,
                samples: 12,
            }),
            cpu: CpuReport {
                clock_ticks_per_sec: 100,
                window_secs: 4.0,
                processes: vec![
                    ProcessCpu {
                        pid: 42,
                        kind: CpuKind::Server,
                        name: Some("herald".into()),
                        cpu_secs: Some(1.5),
                        gone: false,
                        tree_processes: None,
                        tree_exited: None,
                    },
                    ProcessCpu {
                        pid: 43,
                        kind: CpuKind::CpuPid,
                        name: Some("beam.smp".into()),
                        cpu_secs: Some(0.5),
                        gone: false,
                        tree_processes: None,
                        tree_exited: None,
                    },
                    ProcessCpu {
                        pid: 44,
                        kind: CpuKind::CpuPidTree,
                        name: Some("postgres".into()),
                        cpu_secs: Some(2.0),
                        gone: false,
                        tree_processes: Some(12),
                        tree_exited: Some(1),
                    },
                    ProcessCpu {
                        pid: 45,
                        kind: CpuKind::CpuPid,
                        name: Some("postgres".into()),
                        cpu_secs: None,
                        gone: true,
                        tree_processes: None,
                        tree_exited: None,
                    },
                ],
                server_cpu_secs: 1.5,
                extra_cpu_secs: 2.5,
                total_cpu_secs: 4.0,
                server_ms_per_message: Some(15.0),
                extra_ms_per_message: Some(25.0),
                total_ms_per_message: Some(40.0),
                total_ms_per_delivery: Some(4.449),
                bench_cpu_secs: Some(0.75),
                machine: Some(MachineCpu {
                    cpus: 2,
                    busy_cpu_secs: 6.0,
                    busy_percent: 75.0,
                    ms_per_message: Some(60.0),
                    ms_per_delivery: Some(6.674),
                }),
            },
            pgbench: Some(PgbenchReport {
                clients: 32,
                seconds: 10,
                payload_bytes: 40,
                two_insert_tps: 4000.0,
                one_insert_tps: 6000.0,
                accept_fraction_of_two_insert: Some(0.0125),
            }),
        }
    }

    #[test]
    fn table_names_every_figure() {
        let table = render_table(&sample());
        for expected in [
            "mixed (10 endpoints: 8× fast, 1× delay:1000, 1× fail)",
            "open loop, 200 msg/s, at most 1024 in flight (3 sends skipped)",
            "101 / 100 in 2.00 s",
            "50.0 msg/s",
            "p50 2.00  p95 2.00  p99 2.00  max 2.00  (n=1)",
            "1 (http 503: 1)",
            "899 / 900 expected",
            "359.6",
            "fast endpoints e2e (ms)",
            "delay:1000 endpoints e2e (ms)",
            "1 (deadline reached)",
            "failing endpoint attempts received",
            "250",
            "server pid 42 peak RSS",
            "50.0 MB (VmHWM 60.0 MB)",
            "server pid 42 CPU",
            "1.50 s (herald)",
            "cpu-pid pid 43 CPU",
            "0.50 s (beam.smp)",
            "cpu-pid-tree pid 44 CPU",
            "2.00 s (postgres, 12 processes, 1 exited)",
            "n/a: gone during the run (postgres)",
            "server CPU, summed",
            "1.50 s, 15.000 ms/msg",
            "other processes' CPU, summed",
            "2.50 s, 25.000 ms/msg",
            "4.00 s, 40.000 ms/msg, 4.449 ms/delivery",
            "machine busy CPU",
            "6.00 s, 60.000 ms/msg, 6.674 ms/delivery (75.0% of 2 cpus over 4.00 s)",
            "herald-bench's own CPU",
            "0.75 s",
            "pgbench two-insert tx/s",
            "4000.0 (32 clients, 10 s, 40 B payload)",
            "pgbench one-insert tx/s",
            "6000.0",
            "0.013",
        ] {
            assert!(table.contains(expected), "{expected:?} not in\n{table}");
        }
    }

    #[test]
    fn closed_loop_single_endpoint_table() {
        let mut report = sample();
        report.scenario = "single".into();
        report.endpoints = 1;
        report.endpoint_behaviours = BTreeMap::from([(Behaviour::Fast, 1)]);
        report.target_rate_per_sec = None;
        report.max_in_flight = None;
        report.server_memory = None;
        report.pgbench = None;
        report.cpu.processes.clear();
        let table = render_table(&report);
        for expected in [
            "single (1 endpoint: 1× fast)",
            "closed loop, 32 senders",
            "machine busy CPU",
        ] {
            assert!(table.contains(expected), "{expected:?} not in\n{table}");
        }
        for absent in [
            "endpoints e2e",
            "failing endpoint",
            "RSS",
            "pgbench",
            "pid",
            "summed",
            "other processes",
        ] {
            assert!(!table.contains(absent), "{absent:?} in\n{table}");
        }
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["messages_accepted"], 100);
        assert_eq!(json["api_latency"]["p99_ms"], 2.0);
        assert_eq!(json["end_to_end_latency"]["count"], 1);
        assert_eq!(json["end_to_end_by_behaviour"]["fast"]["p99_ms"], 2.0);
        assert_eq!(json["endpoint_behaviours"]["delay:1000"], 1);
        assert_eq!(json["api_error_kinds"]["http 503"], 1);
        assert_eq!(json["signature_failures"], 0);
        assert_eq!(json["failing_endpoint_attempts"], 250);
        assert_eq!(json["target_rate_per_sec"], 200.0);
        assert_eq!(json["server_memory"]["processes"][0]["peak_rss_kb"], 51_200);
        assert_eq!(json["server_memory"]["peak_rss_sum_kb"], 51_200);
        assert_eq!(json["pgbench"]["two_insert_tps"], 4000.0);
        let cpu = &json["cpu"];
        assert_eq!(cpu["clock_ticks_per_sec"], 100);
        assert_eq!(cpu["processes"][0]["kind"], "server");
        assert_eq!(cpu["processes"][0]["cpu_secs"], 1.5);
        assert_eq!(cpu["processes"][1]["kind"], "cpu-pid");
        assert_eq!(cpu["processes"][2]["kind"], "cpu-pid-tree");
        assert_eq!(cpu["processes"][2]["tree_processes"], 12);
        assert_eq!(cpu["processes"][3]["cpu_secs"], serde_json::Value::Null);
        assert_eq!(cpu["processes"][3]["gone"], true);
        assert_eq!(cpu["server_cpu_secs"], 1.5);
        assert_eq!(cpu["extra_cpu_secs"], 2.5);
        assert_eq!(cpu["total_cpu_secs"], 4.0);
        assert_eq!(cpu["total_ms_per_message"], 40.0);
        assert_eq!(cpu["total_ms_per_delivery"], 4.449);
        assert_eq!(cpu["machine"]["busy_cpu_secs"], 6.0);
        assert_eq!(cpu["machine"]["ms_per_message"], 60.0);
        assert_eq!(cpu["machine"]["ms_per_delivery"], 6.674);
    }
}
