//! The contract of the delivery statistics: `record_stats`, `stats_buckets`
//! and `roll_up_stats`.

use chrono::{DateTime, Duration, Utc};
use herald_core::stats::Bucket;
use herald_core::{ApplicationId, AttemptId, EndpointId, ErrorClass, TenantId};
use herald_store::{StatsBucket, StatsGranularity, StatsSample, Store};

use StatsGranularity::{Hour, Minute};

/// A fixed time on a minute boundary, far from now, so tests choose which
/// buckets are old.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-04T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn at(minutes: i64, seconds: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes) + Duration::seconds(seconds)
}

/// Where samples come from: one tenant's application and endpoint.
#[derive(Clone)]
struct Source {
    tenant_id: TenantId,
    app_id: ApplicationId,
    endpoint_id: EndpointId,
}

impl Source {
    fn new() -> Self {
        Self {
            tenant_id: TenantId::new(),
            app_id: ApplicationId::new(),
            endpoint_id: EndpointId::new(),
        }
    }

    /// Another endpoint of the same application.
    fn sibling(&self) -> Self {
        Self {
            endpoint_id: EndpointId::new(),
            ..self.clone()
        }
    }

    /// Sample number `i`: a varied outcome and a duration from 0.5 ms to ~2 s.
    fn sample(&self, i: u64, at: DateTime<Utc>) -> StatsSample {
        let classes = [
            None,
            None,
            None,
            Some(ErrorClass::Http5xx),
            Some(ErrorClass::Timeout),
            Some(ErrorClass::Invalid),
        ];
        let class = classes[(i % classes.len() as u64) as usize];
        StatsSample {
            attempt_id: AttemptId::new(),
            tenant_id: self.tenant_id.clone(),
            app_id: self.app_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            success: class.is_none(),
            error_class: class,
            duration_us: 500 + (i * 7919 * 7919) % 2_000_000,
            at,
        }
    }
}

/// Everything `samples` hold, recorded into one bucket.
fn expected(samples: &[StatsSample]) -> Bucket {
    let mut bucket = Bucket::new();
    for s in samples {
        bucket.record(s.success, s.error_class, s.duration_us);
    }
    bucket
}

/// The samples of `samples` that `keep` selects.
fn only(samples: &[StatsSample], keep: impl Fn(&StatsSample) -> bool) -> Vec<StatsSample> {
    samples.iter().filter(|s| keep(s)).cloned().collect()
}

fn merged(buckets: &[StatsBucket]) -> Bucket {
    let mut all = Bucket::new();
    for b in buckets {
        all.merge(&b.bucket);
    }
    all
}

/// A window wide enough for every test's samples.
fn everything() -> (DateTime<Utc>, DateTime<Utc>) {
    (t0() - Duration::days(1), t0() + Duration::days(1))
}

/// Every bucket of `granularity` of the endpoint (or of its application).
async fn all_buckets(
    store: &dyn Store,
    source: &Source,
    endpoint: bool,
    granularity: StatsGranularity,
) -> Vec<StatsBucket> {
    let (since, until) = everything();
    let buckets = store
        .stats_buckets(
            &source.tenant_id,
            &source.app_id,
            endpoint.then_some(&source.endpoint_id),
            granularity,
            since,
            until,
        )
        .await
        .unwrap();
    assert!(buckets.iter().all(|b| b.granularity == granularity));
    buckets
}

fn starts(buckets: &[StatsBucket]) -> Vec<DateTime<Utc>> {
    buckets.iter().map(|b| b.start).collect()
}

/// Latency quantiles of two buckets agree (they are equal buckets, but say so
/// for the numbers the reports show).
fn assert_same_quantiles(got: &Bucket, want: &Bucket) {
    for q in [0.5, 0.9, 0.99, 1.0] {
        assert_eq!(got.latency_ms(q), want.latency_ms(q), "quantile {q}");
    }
}

pub async fn stats_count_each_attempt_once(store: &dyn Store) {
    let source = Source::new();
    assert_eq!(store.record_stats(&[]).await.unwrap(), 0);

    let mut batch: Vec<StatsSample> = (0..12).map(|i| source.sample(i, at(0, i as i64))).collect();
    // An id repeated within a batch counts once.
    batch.push(batch[3].clone());
    assert_eq!(store.record_stats(&batch).await.unwrap(), 12);
    // The same batch again (redelivered after a crash) counts nothing.
    assert_eq!(store.record_stats(&batch).await.unwrap(), 0);
    // An overlapping batch counts only what is new.
    let mut overlapping: Vec<StatsSample> = batch[6..12].to_vec();
    overlapping.extend((12..18).map(|i| source.sample(i, at(0, 30))));
    assert_eq!(store.record_stats(&overlapping).await.unwrap(), 6);

    let mut unique = batch[..12].to_vec();
    unique.extend_from_slice(&overlapping[6..]);
    let want = expected(&unique);
    // The minute bucket and its hour bucket both hold every attempt once.
    for granularity in [Minute, Hour] {
        let buckets = all_buckets(store, &source, true, granularity).await;
        assert_eq!(buckets.len(), 1, "all in one {granularity:?}");
        let bucket = &buckets[0];
        assert_eq!(bucket.endpoint_id, source.endpoint_id);
        assert_eq!(bucket.start, t0());
        assert_eq!(bucket.bucket, want);
        let counts = bucket.bucket.counts();
        assert_eq!(counts.attempts, 18);
        assert_eq!(counts.successes, 9);
        assert_eq!(counts.failures_of(ErrorClass::Http5xx), 3);
        assert_eq!(counts.failures_of(ErrorClass::Timeout), 3);
        assert_eq!(counts.failures_of(ErrorClass::Other), 3);
        assert_eq!(bucket.bucket.latency_ms(0.99), want.latency_ms(0.99));
    }

    // A sample goes to the minute and the hour it was made in.
    let late = source.sample(99, at(1, 59));
    let next_hour = source.sample(100, at(61, 0));
    assert_eq!(
        store
            .record_stats(&[late.clone(), next_hour.clone()])
            .await
            .unwrap(),
        2
    );
    let minutes = all_buckets(store, &source, true, Minute).await;
    assert_eq!(starts(&minutes), [t0(), at(1, 0), at(61, 0)]);
    let hours = all_buckets(store, &source, true, Hour).await;
    assert_eq!(starts(&hours), [t0(), at(60, 0)]);
    unique.push(late);
    assert_eq!(hours[0].bucket, expected(&unique));
    assert_eq!(hours[1].bucket, expected(&[next_hour]));
    assert_eq!(merged(&hours), merged(&minutes));
}

pub async fn concurrent_stats_batches_add_up_exactly(store: &dyn Store) {
    let a = Source::new();
    let b = a.sibling();
    // 240 attempts over two endpoints and three minutes across an hour
    // boundary (10:58, 10:59, 11:00): every batch touches the same few minute
    // and hour buckets, in varying orders.
    let samples: Vec<StatsSample> = (0..240u64)
        .map(|i| {
            let source = if i % 2 == 0 { &a } else { &b };
            source.sample(i, at(58 + (i % 3) as i64, (i % 60) as i64))
        })
        .collect();
    // Eight writers, each sending overlapping slices of the same attempts
    // (as two stats processes would after a redelivery), in its own order.
    let samples = &samples;
    let writers = (0..8usize).map(|w| async move {
        let mut counted = 0;
        for round in 0..4usize {
            let start = (w * 30 + round * 20) % 240;
            let mut batch: Vec<StatsSample> = (0..40)
                .map(|k| samples[(start + k) % 240].clone())
                .collect();
            if (w + round) % 2 == 1 {
                batch.reverse();
            }
            counted += store.record_stats(&batch).await.unwrap();
        }
        counted
    });
    // Meanwhile roll-ups delete the minutes of 10:xx (whatever is there yet)
    // and take their locks too.
    let roll_ups = async {
        for _ in 0..4 {
            store.roll_up_stats(at(60, 30), t0()).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let (counted, ()) = futures::join!(futures::future::join_all(writers), roll_ups);
    let counted: usize = counted.into_iter().sum();
    // Everything is counted once, including attempts no writer sent twice.
    let covered: std::collections::HashSet<usize> = (0..8usize)
        .flat_map(|w| {
            (0..4usize).flat_map(move |r| (0..40).map(move |k| (w * 30 + r * 20 + k) % 240))
        })
        .collect();
    assert_eq!(counted, covered.len());
    let counted_samples: Vec<StatsSample> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| covered.contains(i))
        .map(|(_, s)| s.clone())
        .collect();
    let want_a = only(&counted_samples, |s| s.endpoint_id == a.endpoint_id);
    let want_b = only(&counted_samples, |s| s.endpoint_id == b.endpoint_id);

    // Hour buckets are exact whatever the roll-ups deleted.
    for (source, want) in [(&a, &want_a), (&b, &want_b)] {
        let hours = all_buckets(store, source, true, Hour).await;
        assert_eq!(starts(&hours), [t0(), at(60, 0)]);
        assert_eq!(hours[0].bucket, expected(&only(want, |s| s.at < at(60, 0))));
        assert_eq!(
            hours[1].bucket,
            expected(&only(want, |s| s.at >= at(60, 0)))
        );
        assert_eq!(merged(&hours), expected(want));
    }
    assert_eq!(
        merged(&all_buckets(store, &a, false, Hour).await)
            .counts()
            .attempts,
        counted as u64
    );
    // Once the last roll-up is done, 11:00 is the only minute left, exact.
    store.roll_up_stats(at(60, 30), t0()).await.unwrap();
    for (source, want) in [(&a, &want_a), (&b, &want_b)] {
        let minutes = all_buckets(store, source, true, Minute).await;
        assert_eq!(starts(&minutes), [at(60, 0)]);
        assert_eq!(
            minutes[0].bucket,
            expected(&only(want, |s| s.at >= at(60, 0)))
        );
    }
}

pub async fn stats_windows_select_by_start_endpoint_and_app(store: &dyn Store) {
    let a = Source::new();
    let b = a.sibling();
    // Another application of the same tenant.
    let c = Source {
        app_id: ApplicationId::new(),
        ..a.sibling()
    };
    let samples = vec![
        a.sample(0, at(0, 0)),
        a.sample(1, at(1, 0)),
        a.sample(2, at(1, 59)),
        a.sample(3, at(2, 0)),
        b.sample(4, at(1, 30)),
        c.sample(5, at(1, 30)),
        a.sample(6, at(61, 0)),
    ];
    assert_eq!(store.record_stats(&samples).await.unwrap(), 7);

    let window = |source: &Source, endpoint: bool, granularity, since, until| {
        let source = source.clone();
        async move {
            let buckets = store
                .stats_buckets(
                    &source.tenant_id,
                    &source.app_id,
                    endpoint.then_some(&source.endpoint_id),
                    granularity,
                    since,
                    until,
                )
                .await
                .unwrap();
            assert!(buckets.iter().all(|b| b.granularity == granularity));
            buckets
        }
    };
    // [since, until): the start is included, the end is not.
    let one = window(&a, true, Minute, at(1, 0), at(2, 0)).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].start, at(1, 0));
    assert_eq!(one[0].bucket.counts().attempts, 2);
    assert!(window(&a, true, Minute, at(1, 1), at(2, 0))
        .await
        .is_empty());
    assert_eq!(window(&a, true, Minute, t0(), at(3, 0)).await.len(), 3);
    assert_eq!(window(&a, true, Minute, t0(), at(62, 0)).await.len(), 4);

    // Hour buckets by their own start: the minutes of 10:xx are in 10:00.
    let hours = window(&a, true, Hour, t0(), at(120, 0)).await;
    assert_eq!(starts(&hours), [t0(), at(60, 0)]);
    assert_eq!(hours[0].bucket.counts().attempts, 4);
    assert_eq!(hours[1].bucket.counts().attempts, 1);
    assert_eq!(
        starts(&window(&a, true, Hour, t0(), at(60, 0)).await),
        [t0()]
    );
    assert_eq!(
        starts(&window(&a, true, Hour, at(1, 0), at(120, 0)).await),
        [at(60, 0)]
    );
    assert!(window(&a, true, Hour, at(1, 0), at(60, 0)).await.is_empty());

    // The application's buckets: both of its endpoints, none of the other
    // app; ordered by start, then endpoint.
    let by_start_then_endpoint = |buckets: &[StatsBucket]| {
        buckets.windows(2).all(|w| {
            (w[0].start, w[0].endpoint_id.as_str()) < (w[1].start, w[1].endpoint_id.as_str())
        })
    };
    let app = window(&a, false, Minute, t0(), at(3, 0)).await;
    assert_eq!(app.len(), 4);
    assert!(by_start_then_endpoint(&app));
    assert_eq!(merged(&app).counts().attempts, 5);
    assert!(app.iter().all(|x| x.endpoint_id != c.endpoint_id));
    let app_hours = window(&a, false, Hour, t0(), at(120, 0)).await;
    assert_eq!(app_hours.len(), 3, "a and b at 10:00, a at 11:00");
    assert!(by_start_then_endpoint(&app_hours));
    assert_eq!(merged(&app_hours).counts().attempts, 6);
    assert!(app_hours.iter().all(|x| x.endpoint_id != c.endpoint_id));
    let other_app = window(&c, false, Minute, t0(), at(3, 0)).await;
    assert_eq!(other_app.len(), 1);
    assert_eq!(other_app[0].endpoint_id, c.endpoint_id);
    let other_app = window(&c, false, Hour, t0(), at(3, 0)).await;
    assert_eq!(other_app.len(), 1);
    assert_eq!(other_app[0].endpoint_id, c.endpoint_id);
    // An endpoint named with the wrong application is not found.
    let wrong_app = Source {
        app_id: c.app_id.clone(),
        ..a.clone()
    };
    for granularity in [Minute, Hour] {
        assert!(window(&wrong_app, true, granularity, t0(), at(3, 0))
            .await
            .is_empty());
    }

    // Another tenant sees nothing, even with the right ids.
    let intruder = Source {
        tenant_id: TenantId::new(),
        ..a.clone()
    };
    for granularity in [Minute, Hour] {
        assert!(window(&intruder, true, granularity, t0(), at(3, 0))
            .await
            .is_empty());
        assert!(window(&intruder, false, granularity, t0(), at(3, 0))
            .await
            .is_empty());
    }

    // After a roll-up, the hours before stay hours only.
    store.roll_up_stats(at(60, 0), t0()).await.unwrap();
    assert!(window(&a, false, Minute, t0(), at(60, 0)).await.is_empty());
    assert_eq!(window(&a, false, Minute, t0(), at(62, 0)).await.len(), 1);
    assert_eq!(window(&a, false, Hour, t0(), at(60, 0)).await.len(), 2);
}

pub async fn roll_up_keeps_totals_and_quantiles(store: &dyn Store) {
    let a = Source::new();
    let b = a.sibling();
    // 10:00–11:29 for a, 10:00–10:59 for b.
    let first: Vec<StatsSample> = (0..90u64)
        .map(|i| a.sample(i, at(i as i64, 0)))
        .chain((0..60u64).map(|i| b.sample(1000 + i, at(i as i64, 10))))
        .collect();
    assert_eq!(store.record_stats(&first).await.unwrap(), 150);
    let a_first: Vec<_> = first[..90].to_vec();
    let hours_before = all_buckets(store, &a, true, Hour).await;
    assert_eq!(starts(&hours_before), [t0(), at(60, 0)]);

    // A cutoff at 11:15 deletes whole hours only: the minutes of 10:xx (60
    // of a, 60 of b); 11:00–11:29 stay, though some are before the cutoff.
    let cutoff = at(75, 0);
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 120);
    let minutes = all_buckets(store, &a, true, Minute).await;
    assert_eq!(minutes.len(), 30, "11:00–11:29 stay minutes");
    assert_eq!(minutes[0].start, at(60, 0));
    assert_eq!(merged(&minutes), expected(&a_first[60..]));
    assert!(all_buckets(store, &b, true, Minute).await.is_empty());
    // The hour buckets are untouched: the same totals and quantiles.
    let hours = all_buckets(store, &a, true, Hour).await;
    assert_eq!(starts(&hours), [t0(), at(60, 0)]);
    assert_eq!(hours[0].bucket, hours_before[0].bucket);
    assert_eq!(hours[0].bucket, expected(&a_first[..60]));
    assert_eq!(hours[1].bucket, expected(&a_first[60..]));
    assert_eq!(merged(&hours), expected(&a_first));
    assert_same_quantiles(&merged(&hours), &expected(&a_first));
    assert_same_quantiles(&hours[0].bucket, &expected(&a_first[..60]));
    let b_hours = all_buckets(store, &b, true, Hour).await;
    assert_eq!(b_hours.len(), 1);
    assert_eq!(b_hours[0].bucket, expected(&first[90..]));

    // Rolling up again finds nothing old.
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 0);

    // A late attempt in an hour already rolled up goes into that hour bucket
    // (and a minute bucket the next roll-up deletes).
    let late = a.sample(500, at(45, 5));
    assert_eq!(
        store
            .record_stats(std::slice::from_ref(&late))
            .await
            .unwrap(),
        1
    );
    let mut a_all = a_first.clone();
    a_all.push(late.clone());
    let mut first_hour = a_first[..60].to_vec();
    first_hour.push(late);
    let hours = all_buckets(store, &a, true, Hour).await;
    assert_eq!(hours[0].bucket, expected(&first_hour));
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 1);
    assert_eq!(all_buckets(store, &a, true, Minute).await.len(), 30);
    let unchanged = all_buckets(store, &a, true, Hour).await;
    assert_eq!(starts(&unchanged), starts(&hours));
    assert_eq!(unchanged[0].bucket, hours[0].bucket);
    assert_eq!(unchanged[1].bucket, hours[1].bucket);

    // Everything rolled up: no minutes left; the hours keep every attempt.
    assert_eq!(store.roll_up_stats(at(24 * 60, 0), t0()).await.unwrap(), 30);
    assert!(all_buckets(store, &a, false, Minute).await.is_empty());
    let hours = all_buckets(store, &a, true, Hour).await;
    assert_eq!(starts(&hours), [t0(), at(60, 0)]);
    assert_eq!(merged(&hours), expected(&a_all));
    assert_same_quantiles(&merged(&hours), &expected(&a_all));
    let app = all_buckets(store, &a, false, Hour).await;
    assert_eq!(app.len(), 3);
    assert_eq!(merged(&app).counts().attempts, 151);
}

pub async fn roll_up_forgets_old_seen_attempts(store: &dyn Store) {
    let source = Source::new();
    let batch: Vec<StatsSample> = (0..5).map(|i| source.sample(i, at(0, 0))).collect();
    assert_eq!(store.record_stats(&batch).await.unwrap(), 5);

    // Seen ids recorded after `seen_before` are kept: still deduplicated.
    let an_hour_ago = herald_store::now() - Duration::hours(1);
    assert_eq!(store.roll_up_stats(t0(), an_hour_ago).await.unwrap(), 0);
    assert_eq!(store.record_stats(&batch).await.unwrap(), 0);

    // Once forgotten, the same ids count again (so pruning must wait until
    // no redelivery can come).
    let later = herald_store::now() + Duration::seconds(1);
    assert_eq!(store.roll_up_stats(t0(), later).await.unwrap(), 0);
    assert_eq!(store.record_stats(&batch).await.unwrap(), 5);
    for granularity in [Minute, Hour] {
        let buckets = all_buckets(store, &source, true, granularity).await;
        assert_eq!(buckets[0].bucket.counts().attempts, 10);
    }
}

pub async fn expired_hour_buckets_are_deleted(store: &dyn Store) {
    let source = Source::new();
    let samples: Vec<StatsSample> = (0..6)
        .map(|i| source.sample(i, at(i64::try_from(i).unwrap() * 60, 0)))
        .collect();
    store.record_stats(&samples).await.unwrap();
    assert_eq!(all_buckets(store, &source, true, Hour).await.len(), 6);
    // Hours before the third one go.
    assert_eq!(store.expire_stats(at(120, 0)).await.unwrap(), 2);
    let left = all_buckets(store, &source, true, Hour).await;
    assert_eq!(
        starts(&left),
        (2..6).map(|h| at(h * 60, 0)).collect::<Vec<_>>()
    );
    assert_eq!(store.expire_stats(at(120, 0)).await.unwrap(), 0);
}
