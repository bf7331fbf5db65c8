//! Per-endpoint delivery statistics (`endpoint_stats`, `stats_seen`):
//! folding a batch of samples into buckets, the mapping of [`OutcomeCounts`]
//! to the counter columns, and their SQL.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::stats::{Bucket, OutcomeCounts};
use herald_core::{ApplicationId, EndpointId, TenantId};

use crate::db::{corrupt, Arg, Dialect, Row, Sql, Tx};
use crate::model::{StatsBucket, StatsGranularity, StatsSample};
use crate::{SqlStore, StatsStore, StoreError, StoreResult};

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
            .record(sample.success, sample.error_class, sample.duration_us);
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
pub(crate) fn bucket_from_row(row: &Row) -> StoreResult<Bucket> {
    let count = |column: &'static str| -> StoreResult<u64> {
        let value = row.integer(column)?;
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
    let latency: Vec<u8> = row.get("latency")?;
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

fn stats_bucket_from_row(row: &Row) -> StoreResult<StatsBucket> {
    let granularity = row.text("granularity")?;
    Ok(StatsBucket {
        endpoint_id: EndpointId::parse(&row.text("endpoint_id")?)
            .map_err(|e| corrupt("endpoint_stats.endpoint_id", e))?,
        granularity: StatsGranularity::parse(&granularity)
            .ok_or_else(|| corrupt("endpoint_stats.granularity", &granularity))?,
        start: row.time("bucket_start")?,
        bucket: bucket_from_row(row)?,
    })
}

/// Merges `owned` into the stored bucket at `key` (creating it), holding the
/// stored row's lock from read to write (PostgreSQL: `FOR UPDATE`; SQLite:
/// the write transaction), so concurrent merges into one bucket serialise
/// instead of losing counts.
async fn merge_bucket(
    tx: &mut Tx,
    dialect: Dialect,
    granularity: StatsGranularity,
    key: &BucketKey,
    owned: &OwnedBucket,
) -> StoreResult<()> {
    // The statement with the bucket's key bound as `$1` to `$3`.
    let keyed = |text: &str| {
        Sql::new(text)
            .bind(key.0.as_str())
            .bind(granularity.as_str())
            .bind(key.1)
    };
    loop {
        let select = keyed(&format!(
            "SELECT {COUNTER_COLUMNS}, latency FROM endpoint_stats \
             WHERE endpoint_id = $1 AND granularity = $2 AND bucket_start = $3{}",
            dialect.for_update()
        ));
        let stored = tx.read(select).await?;
        let (merged, statement) = match stored.first() {
            Some(row) => {
                let mut stored = bucket_from_row(row)?;
                stored.merge(&owned.bucket);
                (
                    stored,
                    "UPDATE endpoint_stats SET attempts = $6, successes = $7, timeout = $8, \
                         connect = $9, dns = $10, tls = $11, blocked = $12, http3xx = $13, \
                         http4xx = $14, http5xx = $15, other = $16, latency = $17 \
                     WHERE endpoint_id = $1 AND granularity = $2 AND bucket_start = $3",
                )
            }
            // Absent: insert it, unless a concurrent writer did first (then
            // its row is locked and merged into on the next round).
            None => (
                owned.bucket.clone(),
                "INSERT INTO endpoint_stats (endpoint_id, granularity, bucket_start, tenant_id, \
                     app_id, attempts, successes, timeout, connect, dns, tls, blocked, http3xx, \
                     http4xx, http5xx, other, latency) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17) \
                 ON CONFLICT (endpoint_id, granularity, bucket_start) DO NOTHING",
            ),
        };
        let latency = merged.latency_bytes();
        let mut write = keyed(statement)
            .bind(owned.tenant_id.as_str())
            .bind(owned.app_id.as_str());
        for counter in counters(merged.counts()) {
            write = write.bind(counter);
        }
        if tx.write(write.bind(&latency)).await? == 1 {
            return Ok(());
        }
    }
}

#[async_trait]
impl StatsStore for SqlStore {
    async fn record_stats(&self, samples: &[StatsSample]) -> StoreResult<usize> {
        if samples.is_empty() {
            return Ok(0);
        }
        let dialect = self.db.dialect();
        let mut tx = self.db.begin().await?;
        // Concurrent batches with common ids insert them in the same (sorted)
        // order, and a second inserter of an id waits for the first to commit
        // and then skips it: every id is new to exactly one transaction.
        let seen = Sql::new(format!(
            "INSERT INTO stats_seen (attempt_id, seen_at) \
             SELECT value, $2 FROM {} WHERE true ORDER BY value {} \
             ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id",
            dialect.list(1),
            dialect.bytewise()
        ))
        .bind(Arg::Texts(sorted_attempt_ids(samples)))
        .bind(crate::now());
        let new = tx
            .read(seen)
            .await?
            .iter()
            .map(|row| row.text("attempt_id"))
            .collect::<StoreResult<HashSet<String>>>()?;
        let counted = new.len();
        // Every minute bucket in key order, then every hour bucket in key
        // order: one global lock order, so concurrent writers (and the
        // roll-up, which locks minute rows in key order) never deadlock.
        let minutes = minute_buckets(samples, new);
        let hours = hour_buckets(&minutes);
        for (key, owned) in &minutes {
            merge_bucket(&mut tx, dialect, StatsGranularity::Minute, key, owned).await?;
        }
        for (key, owned) in &hours {
            merge_bucket(&mut tx, dialect, StatsGranularity::Hour, key, owned).await?;
        }
        tx.commit().await?;
        Ok(counted)
    }

    async fn stats_buckets(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: Option<&EndpointId>,
        granularity: StatsGranularity,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<StatsBucket>> {
        let mut sql = Sql::new(format!(
            "SELECT endpoint_id, granularity, bucket_start, {COUNTER_COLUMNS}, latency \
             FROM endpoint_stats WHERE tenant_id = $1 AND app_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        if let Some(endpoint_id) = endpoint_id {
            sql.and(" AND endpoint_id = ", endpoint_id.as_str());
        }
        sql.and(" AND granularity = ", granularity.as_str())
            .and(" AND bucket_start >= ", since)
            .and(" AND bucket_start < ", until)
            .push(" ORDER BY bucket_start, endpoint_id");
        self.db.read_as(sql, stats_bucket_from_row).await
    }

    async fn roll_up_stats(
        &self,
        minutes_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Whole hours only: every minute of an hour before this one goes.
        let cutoff = StatsGranularity::Hour.truncate(minutes_before);
        let mut tx = self.db.begin().await?;
        let deleted = match self.db.dialect() {
            // Locked in key order (as `record_stats` locks minute rows, before
            // any hour row), so a concurrent batch or roll-up waits rather
            // than deadlocks; a row a concurrent roll-up deleted first is
            // skipped. Then exactly the rows locked are deleted: one created
            // meanwhile (by a late batch, whose hour bucket holds it too) is
            // left for the next roll-up rather than locked out of order.
            Dialect::Postgres => {
                let lock = Sql::new(
                    "SELECT endpoint_id, bucket_start FROM endpoint_stats \
                     WHERE granularity = 'minute' AND bucket_start < $1 \
                     ORDER BY endpoint_id, bucket_start FOR UPDATE",
                )
                .bind(cutoff);
                let rows = tx.read(lock).await?;
                let mut endpoints = Vec::with_capacity(rows.len());
                let mut starts = Vec::with_capacity(rows.len());
                for row in &rows {
                    endpoints.push(row.text("endpoint_id")?);
                    starts.push(Some(row.time("bucket_start")?));
                }
                let delete = Sql::new(
                    "DELETE FROM endpoint_stats WHERE granularity = 'minute' \
                     AND (endpoint_id, bucket_start) IN \
                         (SELECT * FROM unnest($1::text[], $2::timestamptz[]))",
                )
                .bind(Arg::texts(endpoints.iter().map(String::as_str)))
                .bind(Arg::Times(starts));
                tx.write(delete).await?
            }
            // The write transaction already excludes every other writer.
            Dialect::Sqlite => {
                let delete = Sql::new(
                    "DELETE FROM endpoint_stats WHERE granularity = 'minute' AND bucket_start < $1",
                );
                tx.write(delete.bind(cutoff)).await?
            }
        };
        let forget = Sql::new("DELETE FROM stats_seen WHERE seen_at < $1").bind(seen_before);
        tx.write(forget).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn expire_stats(&self, hours_before: DateTime<Utc>) -> StoreResult<u64> {
        let sql =
            Sql::new("DELETE FROM endpoint_stats WHERE granularity = 'hour' AND bucket_start < $1")
                .bind(hours_before);
        self.db.write(sql).await
    }
}

#[cfg(test)]
mod tests {
    use herald_core::ErrorClass;

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
                bucket.record(k % 2 == 0, Some(ErrorClass::Http5xx), 1000 * (k + 1));
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
