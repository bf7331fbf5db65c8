//! Stats for a window: the merge of every bucket that starts in it, in total
//! and as a time series.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use herald_core::stats::{Bucket, OutcomeCounts};
use herald_core::{ApplicationId, EndpointId, TenantId};
use herald_store::{StatsBucket, Store, StoreResult};

/// The width of a time-series point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn width(self) -> TimeDelta {
        match self {
            Granularity::Minute => TimeDelta::minutes(1),
            Granularity::Hour => TimeDelta::hours(1),
            Granularity::Day => TimeDelta::days(1),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    /// The start of the point `at` falls in (UTC).
    pub fn truncate(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.width()).unwrap_or(at)
    }
}

/// Latency percentiles in milliseconds; `None` without attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl LatencySummary {
    pub fn of(bucket: &Bucket) -> Self {
        Self {
            p50: bucket.latency_ms(0.50),
            p95: bucket.latency_ms(0.95),
            p99: bucket.latency_ms(0.99),
            max: bucket.max_latency_ms(),
        }
    }
}

/// One point of a time series.
#[derive(Clone, Debug)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub counts: OutcomeCounts,
    pub latency: LatencySummary,
}

/// Stats of a window.
#[derive(Clone, Debug)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub counts: OutcomeCounts,
    pub latency: LatencySummary,
    /// Points with attempts only, oldest first.
    pub series: Vec<Point>,
    /// Per endpoint, for application reports: its totals and latency.
    pub endpoints: Vec<(EndpointId, OutcomeCounts, LatencySummary)>,
}

/// Merges `buckets` into a report; `series` points have the given width (a
/// bucket coarser than the width — an hour bucket after roll-up — lands in
/// the point its start falls in).
pub fn build_report(
    buckets: &[StatsBucket],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    granularity: Granularity,
    per_endpoint: bool,
) -> Report {
    let mut total = Bucket::new();
    let mut points: BTreeMap<DateTime<Utc>, Bucket> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, (EndpointId, Bucket)> = BTreeMap::new();
    for stored in buckets {
        total.merge(&stored.bucket);
        points
            .entry(granularity.truncate(stored.start))
            .or_default()
            .merge(&stored.bucket);
        if per_endpoint {
            endpoints
                .entry(stored.endpoint_id.to_string())
                .or_insert_with(|| (stored.endpoint_id.clone(), Bucket::new()))
                .1
                .merge(&stored.bucket);
        }
    }
    Report {
        since,
        until,
        counts: *total.counts(),
        latency: LatencySummary::of(&total),
        series: points
            .into_iter()
            .map(|(start, bucket)| Point {
                start,
                counts: *bucket.counts(),
                latency: LatencySummary::of(&bucket),
            })
            .collect(),
        endpoints: endpoints
            .into_values()
            .map(|(id, bucket)| (id, *bucket.counts(), LatencySummary::of(&bucket)))
            .collect(),
    }
}

/// The report of one endpoint, or of every endpoint of an application when
/// `endpoint_id` is `None` (then with a per-endpoint breakdown).
pub async fn report(
    store: &dyn Store,
    tenant_id: &TenantId,
    app_id: &ApplicationId,
    endpoint_id: Option<&EndpointId>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    granularity: Granularity,
) -> StoreResult<Report> {
    let buckets = store
        .stats_buckets(tenant_id, app_id, endpoint_id, since, until)
        .await?;
    Ok(build_report(
        &buckets,
        since,
        until,
        granularity,
        endpoint_id.is_none(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_store::StatsGranularity;

    fn bucket(
        endpoint: &EndpointId,
        start: DateTime<Utc>,
        durations_ms: &[u64],
        failures: u64,
    ) -> StatsBucket {
        let mut bucket = Bucket::new();
        for ms in durations_ms {
            bucket.record(true, None, ms * 1000);
        }
        for _ in 0..failures {
            bucket.record(false, Some("5xx"), 1000);
        }
        StatsBucket {
            endpoint_id: endpoint.clone(),
            granularity: StatsGranularity::Minute,
            start,
            bucket,
        }
    }

    #[test]
    fn a_report_merges_every_bucket_and_groups_the_series() {
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let minute = TimeDelta::minutes(1);
        let buckets = vec![
            bucket(&a, t0, &[10, 10, 10], 1),
            bucket(&a, t0 + minute, &[100], 0),
            bucket(&b, t0 + TimeDelta::hours(1), &[1000], 2),
        ];
        let report = build_report(
            &buckets,
            t0,
            t0 + TimeDelta::hours(2),
            Granularity::Hour,
            true,
        );
        assert_eq!(report.counts.attempts, 8);
        assert_eq!(report.counts.successes, 5);
        assert_eq!(report.counts.http5xx, 3);
        assert_eq!(report.series.len(), 2, "two hours");
        assert_eq!(report.series[0].counts.attempts, 5);
        assert_eq!(report.series[1].start, t0 + TimeDelta::hours(1));
        assert_eq!(report.endpoints.len(), 2);
        let max = report.latency.max.unwrap();
        assert!((max - 1000.0).abs() / 1000.0 <= 0.01, "{max}");

        let by_minute = build_report(
            &buckets,
            t0,
            t0 + TimeDelta::hours(2),
            Granularity::Minute,
            false,
        );
        assert_eq!(by_minute.series.len(), 3);
        assert!(by_minute.endpoints.is_empty());
    }

    #[test]
    fn an_empty_window_has_no_latency() {
        let now = Utc::now();
        let report = build_report(
            &[],
            now - TimeDelta::hours(1),
            now,
            Granularity::Hour,
            false,
        );
        assert_eq!(report.counts.attempts, 0);
        assert_eq!(report.latency, LatencySummary::default());
        assert!(report.series.is_empty());
    }
}
