//! Stats for a window: the merge of the stored buckets that cover it, in
//! total and as a time series. Hour and day reports read hour buckets (24 a
//! day per endpoint, however many attempts they count); minute reports read
//! minute buckets, and hour buckets for the hours whose minutes have been
//! deleted by the roll-up.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use herald_core::stats::{Bucket, OutcomeCounts};
use herald_core::{ApplicationId, EndpointId, TenantId};
use herald_store::{StatsBucket, StatsGranularity, StatsStore, StoreResult};

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
/// bucket coarser than the width — an hour bucket in a minute report — lands
/// in the point its start falls in).
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
///
/// Hour and day reports read hour buckets, so they count **whole hours**: every
/// attempt from the start of the hour `since` falls in through the end of the
/// hour `until` falls in (the hour buckets that start in
/// `[since truncated to the hour, until)`). Minute reports count the attempts
/// of the minute buckets that start in `[since, until)`; for an hour of the
/// window whose minute buckets the roll-up has deleted (older than the minute
/// retention), they count its hour bucket instead, so such an hour counts
/// whole. (A minute bucket recreated in such an hour by a very late attempt
/// hides that hour's bucket until the next roll-up deletes it.) The report's
/// `since` and `until` are the window asked for either way.
pub async fn report(
    store: &dyn StatsStore,
    tenant_id: &TenantId,
    app_id: &ApplicationId,
    endpoint_id: Option<&EndpointId>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    granularity: Granularity,
) -> StoreResult<Report> {
    let hours_since = StatsGranularity::Hour.truncate(since);
    let buckets = match granularity {
        Granularity::Hour | Granularity::Day => {
            store
                .stats_buckets(
                    tenant_id,
                    app_id,
                    endpoint_id,
                    StatsGranularity::Hour,
                    hours_since,
                    until,
                )
                .await?
        }
        Granularity::Minute => {
            // The minutes of the window's whole hours, to tell which hours the
            // roll-up has emptied: it deletes an hour's minute buckets all at
            // once, so an hour bucket without a single minute bucket of its
            // endpoint and hour stands for minutes deleted. Only the minutes
            // in `[since, until)` are counted.
            let hours_until = match StatsGranularity::Hour.truncate(until) {
                hour if hour == until => until,
                hour => hour + TimeDelta::hours(1),
            };
            let minutes = store
                .stats_buckets(
                    tenant_id,
                    app_id,
                    endpoint_id,
                    StatsGranularity::Minute,
                    hours_since,
                    hours_until,
                )
                .await?;
            let hours = store
                .stats_buckets(
                    tenant_id,
                    app_id,
                    endpoint_id,
                    StatsGranularity::Hour,
                    hours_since,
                    until,
                )
                .await?;
            let with_minutes: HashSet<(&EndpointId, DateTime<Utc>)> = minutes
                .iter()
                .map(|m| (&m.endpoint_id, StatsGranularity::Hour.truncate(m.start)))
                .collect();
            let rolled_up: Vec<&StatsBucket> = hours
                .iter()
                .filter(|h| !with_minutes.contains(&(&h.endpoint_id, h.start)))
                .collect();
            rolled_up
                .into_iter()
                .chain(
                    minutes
                        .iter()
                        .filter(|m| since <= m.start && m.start < until),
                )
                .cloned()
                .collect()
        }
    };
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
            bucket.record(false, Some(herald_core::ErrorClass::Http5xx), 1000);
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

    /// Report selection against a real store: a SQLite file.
    mod selection {
        use super::super::*;
        use herald_core::AttemptId;
        use herald_store::{SqlStore, StatsSample, Store};

        struct Fixture {
            store: SqlStore,
            _dir: tempfile::TempDir,
            tenant_id: TenantId,
            app_id: ApplicationId,
            a: EndpointId,
            b: EndpointId,
        }

        /// `hh:mm` on a fixed day.
        fn t(hour: i64, minute: i64) -> DateTime<Utc> {
            DateTime::parse_from_rfc3339("2024-05-06T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
                + TimeDelta::hours(hour)
                + TimeDelta::minutes(minute)
        }

        /// Endpoint a: attempts at 10:05, 10:40, 11:10 and 12:30; endpoint
        /// b (same application): one at 10:20.
        async fn fixture() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("herald.db");
            let store = SqlStore::sqlite(path.to_str().unwrap(), 2).await.unwrap();
            store.migrate().await.unwrap();
            let f = Fixture {
                store,
                _dir: dir,
                tenant_id: TenantId::new(),
                app_id: ApplicationId::new(),
                a: EndpointId::new(),
                b: EndpointId::new(),
            };
            let sample = |endpoint: &EndpointId, at| StatsSample {
                attempt_id: AttemptId::new(),
                tenant_id: f.tenant_id.clone(),
                app_id: f.app_id.clone(),
                endpoint_id: endpoint.clone(),
                success: true,
                error_class: None,
                duration_us: 20_000,
                at,
            };
            let samples = [
                sample(&f.a, t(10, 5)),
                sample(&f.a, t(10, 40)),
                sample(&f.a, t(11, 10)),
                sample(&f.a, t(12, 30)),
                sample(&f.b, t(10, 20)),
            ];
            assert_eq!(f.store.record_stats(&samples).await.unwrap(), 5);
            f
        }

        impl Fixture {
            async fn report(
                &self,
                endpoint: Option<&EndpointId>,
                since: DateTime<Utc>,
                until: DateTime<Utc>,
                granularity: Granularity,
            ) -> Report {
                report(
                    &self.store,
                    &self.tenant_id,
                    &self.app_id,
                    endpoint,
                    since,
                    until,
                    granularity,
                )
                .await
                .unwrap()
            }

            /// Deletes the minute buckets of the hours before `before`'s.
            async fn roll_up(&self, before: DateTime<Utc>) {
                self.store.roll_up_stats(before, t(0, 0)).await.unwrap();
            }
        }

        fn starts(report: &Report) -> Vec<DateTime<Utc>> {
            report.series.iter().map(|p| p.start).collect()
        }

        #[tokio::test]
        async fn hour_and_day_reports_count_whole_hours() {
            let f = fixture().await;
            let a = Some(&f.a);
            // 10:30–12:00 counts 10:00–11:59: 10:05 too, not 12:30.
            let hourly = f.report(a, t(10, 30), t(12, 0), Granularity::Hour).await;
            assert_eq!(hourly.counts.attempts, 3);
            assert_eq!(starts(&hourly), [t(10, 0), t(11, 0)]);
            assert_eq!((hourly.since, hourly.until), (t(10, 30), t(12, 0)));
            // Through the hour `until` falls in.
            let through = f.report(a, t(10, 30), t(12, 1), Granularity::Hour).await;
            assert_eq!(through.counts.attempts, 4);
            let daily = f.report(a, t(10, 30), t(12, 0), Granularity::Day).await;
            assert_eq!(daily.counts.attempts, 3);
            assert_eq!(starts(&daily), [t(0, 0)]);
            assert_eq!((daily.since, daily.until), (t(10, 30), t(12, 0)));
            // The application: both endpoints.
            let app = f.report(None, t(10, 30), t(12, 0), Granularity::Hour).await;
            assert_eq!(app.counts.attempts, 4);
            assert_eq!(app.endpoints.len(), 2);
            // The roll-up changes nothing for them.
            f.roll_up(t(13, 0)).await;
            let after = f.report(a, t(10, 30), t(12, 0), Granularity::Hour).await;
            assert_eq!(after.counts, hourly.counts);
            assert_eq!(after.latency, hourly.latency);
        }

        #[tokio::test]
        async fn minute_reports_count_the_minutes_kept() {
            let f = fixture().await;
            let a = Some(&f.a);
            let minutely = f.report(a, t(10, 30), t(12, 0), Granularity::Minute).await;
            assert_eq!(minutely.counts.attempts, 2, "10:40 and 11:10 only");
            assert_eq!(starts(&minutely), [t(10, 40), t(11, 10)]);
            assert_eq!((minutely.since, minutely.until), (t(10, 30), t(12, 0)));
            // An idle window counts nothing, though its hours had attempts.
            let idle = f.report(a, t(10, 45), t(11, 5), Granularity::Minute).await;
            assert_eq!(idle.counts.attempts, 0);
            assert!(idle.series.is_empty());
            let tail = f.report(a, t(11, 15), t(11, 30), Granularity::Minute).await;
            assert_eq!(tail.counts.attempts, 0);
            let app = f
                .report(None, t(10, 0), t(10, 30), Granularity::Minute)
                .await;
            assert_eq!(app.counts.attempts, 2, "10:05 of a, 10:20 of b");
            assert_eq!(starts(&app), [t(10, 5), t(10, 20)]);
        }

        #[tokio::test]
        async fn minute_reports_read_hours_whose_minutes_were_rolled_up() {
            let f = fixture().await;
            let a = Some(&f.a);
            // The minutes of 10:xx go (a cutoff at 11:20 keeps all of 11:xx).
            f.roll_up(t(11, 20)).await;
            let minutely = f.report(a, t(10, 30), t(12, 0), Granularity::Minute).await;
            assert_eq!(minutely.counts.attempts, 3, "all of 10:xx, then 11:10");
            assert_eq!(starts(&minutely), [t(10, 0), t(11, 10)]);
            assert_eq!((minutely.since, minutely.until), (t(10, 30), t(12, 0)));
            // Still exact where minutes are kept.
            let kept = f.report(a, t(11, 15), t(13, 0), Granularity::Minute).await;
            assert_eq!(kept.counts.attempts, 1);
            assert_eq!(starts(&kept), [t(12, 30)]);
            // Every endpoint of the application, each from its own hours.
            let app = f
                .report(None, t(10, 30), t(12, 0), Granularity::Minute)
                .await;
            assert_eq!(app.counts.attempts, 4);
            assert_eq!(app.endpoints.len(), 2);

            // Everything rolled up: the whole window from hour buckets.
            f.roll_up(t(13, 0)).await;
            let hours = f.report(a, t(10, 30), t(12, 45), Granularity::Minute).await;
            assert_eq!(hours.counts.attempts, 4);
            assert_eq!(starts(&hours), [t(10, 0), t(11, 0), t(12, 0)]);
            let app = f
                .report(None, t(10, 30), t(12, 0), Granularity::Minute)
                .await;
            assert_eq!(app.counts.attempts, 4);
        }
    }
}
