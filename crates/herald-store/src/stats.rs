//! What both stores share for the delivery statistics (`endpoint_stats`,
//! `stats_seen`): folding a batch of samples into buckets, and the mapping of
//! [`OutcomeCounts`] to the counter columns.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use chrono::{DateTime, Utc};
use herald_core::stats::{Bucket, OutcomeCounts};
use herald_core::{ApplicationId, EndpointId, TenantId};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use crate::model::{StatsGranularity, StatsSample};
use crate::{StoreError, StoreResult};

/// The counter columns of `endpoint_stats`, in the order of [`counters`].
pub(crate) const COUNTER_COLUMNS: &str =
    "attempts, successes, timeout, connect, dns, tls, blocked, http3xx, http4xx, http5xx, other";

/// The key of a stored bucket of a known granularity: endpoint, then start.
/// Ordered as the stores lock rows (ids compare bytewise, as the "C"
/// collation does), so concurrent writers never wait for each other in a cycle.
pub(crate) type BucketKey = (EndpointId, DateTime<Utc>);

/// A bucket to merge into the stored one, with the owners of its endpoint.
pub(crate) struct OwnedBucket {
    pub tenant_id: TenantId,
    pub app_id: ApplicationId,
    pub bucket: Bucket,
}

/// The distinct attempt ids of a batch, sorted (the order the `stats_seen`
/// rows are inserted in, for the same reason as [`BucketKey`]).
pub(crate) fn sorted_attempt_ids(samples: &[StatsSample]) -> Vec<&str> {
    let mut ids: Vec<&str> = samples.iter().map(|s| s.attempt_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Folds the samples whose attempt id is in `new` (each id once, however
/// often the batch repeats it) into minute buckets.
pub(crate) fn minute_buckets(
    samples: &[StatsSample],
    mut new: HashSet<String>,
) -> BTreeMap<BucketKey, OwnedBucket> {
    let mut buckets: BTreeMap<BucketKey, OwnedBucket> = BTreeMap::new();
    for sample in samples {
        if !new.remove(sample.attempt_id.as_str()) {
            continue;
        }
        let key = (
            sample.endpoint_id.clone(),
            StatsGranularity::Minute.truncate(sample.at),
        );
        buckets
            .entry(key)
            .or_insert_with(|| OwnedBucket {
                tenant_id: sample.tenant_id.clone(),
                app_id: sample.app_id.clone(),
                bucket: Bucket::new(),
            })
            .bucket
            .record(
                sample.success,
                sample.error_class.as_deref(),
                sample.duration_us,
            );
    }
    buckets
}

/// The counters of `counts` in the order of [`COUNTER_COLUMNS`], as the
/// signed 64-bit integers both databases store (saturating).
pub(crate) fn counters(counts: &OutcomeCounts) -> [i64; 11] {
    [
        counts.attempts,
        counts.successes,
        counts.timeout,
        counts.connect,
        counts.dns,
        counts.tls,
        counts.blocked,
        counts.http3xx,
        counts.http4xx,
        counts.http5xx,
        counts.other,
    ]
    .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
}

/// Reads the counter columns and the `latency` column of a row.
pub(crate) fn bucket_from_row<'r, R>(row: &'r R) -> StoreResult<Bucket>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    let count = |column: &'static str| -> StoreResult<u64> {
        let value: i64 = row.try_get(column)?;
        u64::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("endpoint_stats.{column}: {value}")))
    };
    let counts = OutcomeCounts {
        attempts: count("attempts")?,
        successes: count("successes")?,
        timeout: count("timeout")?,
        connect: count("connect")?,
        dns: count("dns")?,
        tls: count("tls")?,
        blocked: count("blocked")?,
        http3xx: count("http3xx")?,
        http4xx: count("http4xx")?,
        http5xx: count("http5xx")?,
        other: count("other")?,
    };
    let latency: Vec<u8> = row.try_get("latency")?;
    Bucket::from_parts(counts, &latency)
        .map_err(|e| StoreError::Corrupt(format!("endpoint_stats.latency: {e}")))
}

/// The hour buckets a batch's minute buckets add to (each hour's minutes
/// merged), sorted by key as the minute buckets are. `record_stats` merges
/// them after every minute bucket, so every writer locks all its minute rows
/// in key order, then all its hour rows in key order: never a cycle.
pub(crate) fn hour_buckets(
    minutes: &BTreeMap<BucketKey, OwnedBucket>,
) -> Vec<(BucketKey, OwnedBucket)> {
    let keys: Vec<BucketKey> = minutes.keys().cloned().collect();
    let owned: Vec<&OwnedBucket> = minutes.values().collect();
    hour_runs(&keys)
        .into_iter()
        .map(|(hour, range)| {
            let first = owned[range.start];
            let mut bucket = Bucket::new();
            for minute in &owned[range] {
                bucket.merge(&minute.bucket);
            }
            (
                hour,
                OwnedBucket {
                    tenant_id: first.tenant_id.clone(),
                    app_id: first.app_id.clone(),
                    bucket,
                },
            )
        })
        .collect()
}

/// Splits the keys of minute buckets, sorted by endpoint then start, into
/// runs that add up to one hour bucket: that bucket's key and the run's
/// index range, in the same order.
pub(crate) fn hour_runs(minutes: &[BucketKey]) -> Vec<(BucketKey, Range<usize>)> {
    let mut runs: Vec<(BucketKey, Range<usize>)> = Vec::new();
    for (i, (endpoint_id, start)) in minutes.iter().enumerate() {
        let hour = StatsGranularity::Hour.truncate(*start);
        match runs.last_mut() {
            Some(((e, h), range)) if e == endpoint_id && *h == hour => range.end = i + 1,
            _ => runs.push(((endpoint_id.clone(), hour), i..i + 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_grouped_by_endpoint_and_hour() {
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        let at = |h: i64, m: i64| DateTime::from_timestamp(h * 3600 + m * 60, 0).unwrap();
        let minutes = vec![
            (a.clone(), at(1, 0)),
            (a.clone(), at(1, 59)),
            (a.clone(), at(2, 0)),
            (b.clone(), at(2, 5)),
            (b.clone(), at(2, 6)),
        ];
        let runs = hour_runs(&minutes);
        assert_eq!(
            runs,
            vec![
                ((a.clone(), at(1, 0)), 0..2),
                ((a, at(2, 0)), 2..3),
                ((b, at(2, 0)), 3..5),
            ]
        );
        assert!(hour_runs(&[]).is_empty());
    }

    #[test]
    fn hour_buckets_merge_their_minutes() {
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        let (tenant_id, app_id) = (TenantId::new(), ApplicationId::new());
        let at = |h: i64, m: i64| DateTime::from_timestamp(h * 3600 + m * 60, 0).unwrap();
        let mut minutes = BTreeMap::new();
        for (i, (endpoint, start)) in [
            (&a, at(1, 0)),
            (&a, at(1, 59)),
            (&a, at(2, 0)),
            (&b, at(1, 5)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut bucket = Bucket::new();
            for k in 0..=i as u64 {
                bucket.record(k % 2 == 0, Some("5xx"), 1000 * (k + 1));
            }
            minutes.insert(
                (endpoint.clone(), start),
                OwnedBucket {
                    tenant_id: tenant_id.clone(),
                    app_id: app_id.clone(),
                    bucket,
                },
            );
        }
        let hours = hour_buckets(&minutes);
        let keys: Vec<_> = hours.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(
            keys,
            vec![(a.clone(), at(1, 0)), (a.clone(), at(2, 0)), (b, at(1, 0))]
        );
        let mut first = minutes[&(a.clone(), at(1, 0))].bucket.clone();
        first.merge(&minutes[&(a.clone(), at(1, 59))].bucket);
        assert_eq!(hours[0].1.bucket, first);
        assert_eq!(hours[0].1.bucket.counts().attempts, 3);
        assert_eq!(hours[1].1.bucket, minutes[&(a, at(2, 0))].bucket);
        assert_eq!(hours[2].1.bucket.counts().attempts, 4);
        assert!(hour_buckets(&BTreeMap::new()).is_empty());
    }
}
