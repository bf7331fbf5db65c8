//! The contract of the delivery statistics: `record_stats`, `stats_buckets`
//! and `roll_up_stats`.

use chrono::{DateTime, Duration, Utc};
use herald_core::stats::{Bucket, FailureClass};
use herald_core::{ApplicationId, AttemptId, EndpointId, TenantId};
use herald_store::{StatsBucket, StatsGranularity, StatsSample, Store};

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
            Some("5xx"),
            Some("timeout"),
            Some("invalid"),
        ];
        let class = classes[(i % classes.len() as u64) as usize];
        StatsSample {
            attempt_id: AttemptId::new(),
            tenant_id: self.tenant_id.clone(),
            app_id: self.app_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            success: class.is_none(),
            error_class: class.map(str::to_owned),
            duration_us: 500 + (i * 7919 * 7919) % 2_000_000,
            at,
        }
    }
}

/// Everything `samples` hold, recorded into one bucket.
fn expected(samples: &[StatsSample]) -> Bucket {
    let mut bucket = Bucket::new();
    for s in samples {
        bucket.record(s.success, s.error_class.as_deref(), s.duration_us);
    }
    bucket
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

async fn all_buckets(store: &dyn Store, source: &Source, endpoint: bool) -> Vec<StatsBucket> {
    let (since, until) = everything();
    store
        .stats_buckets(
            &source.tenant_id,
            &source.app_id,
            endpoint.then_some(&source.endpoint_id),
            since,
            until,
        )
        .await
        .unwrap()
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

    let buckets = all_buckets(store, &source, true).await;
    assert_eq!(buckets.len(), 1, "all in one minute");
    let bucket = &buckets[0];
    assert_eq!(bucket.endpoint_id, source.endpoint_id);
    assert_eq!(bucket.granularity, StatsGranularity::Minute);
    assert_eq!(bucket.start, t0());
    let mut unique = batch[..12].to_vec();
    unique.extend_from_slice(&overlapping[6..]);
    let want = expected(&unique);
    assert_eq!(bucket.bucket, want);
    let counts = bucket.bucket.counts();
    assert_eq!(counts.attempts, 18);
    assert_eq!(counts.successes, 9);
    assert_eq!(counts.failures_of(FailureClass::Http5xx), 3);
    assert_eq!(counts.failures_of(FailureClass::Timeout), 3);
    assert_eq!(counts.failures_of(FailureClass::Other), 3);
    assert_eq!(bucket.bucket.latency_ms(0.99), want.latency_ms(0.99));

    // A sample goes to the minute it was made in.
    let late = source.sample(99, at(1, 59));
    assert_eq!(store.record_stats(&[late]).await.unwrap(), 1);
    let buckets = all_buckets(store, &source, true).await;
    let starts: Vec<_> = buckets.iter().map(|b| b.start).collect();
    assert_eq!(starts, [t0(), at(1, 0)]);
}

pub async fn concurrent_stats_batches_add_up_exactly(store: &dyn Store) {
    let a = Source::new();
    let b = a.sibling();
    // 240 attempts over two endpoints and three minutes: every batch touches
    // the same few buckets, in varying orders.
    let samples: Vec<StatsSample> = (0..240u64)
        .map(|i| {
            let source = if i % 2 == 0 { &a } else { &b };
            source.sample(i, at((i % 3) as i64, (i % 60) as i64))
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
    let counted: usize = futures::future::join_all(writers).await.into_iter().sum();
    // Everything is counted once, including attempts no writer sent twice.
    let covered: std::collections::HashSet<usize> = (0..8usize)
        .flat_map(|w| {
            (0..4usize).flat_map(move |r| (0..40).map(move |k| (w * 30 + r * 20 + k) % 240))
        })
        .collect();
    assert_eq!(counted, covered.len());
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if covered.contains(&i) {
            if s.endpoint_id == a.endpoint_id {
                want_a.push(s.clone());
            } else {
                want_b.push(s.clone());
            }
        }
    }
    let buckets_a = all_buckets(store, &a, true).await;
    let buckets_b = all_buckets(store, &b, true).await;
    assert_eq!(buckets_a.len(), 3);
    assert_eq!(buckets_b.len(), 3);
    assert_eq!(merged(&buckets_a), expected(&want_a));
    assert_eq!(merged(&buckets_b), expected(&want_b));
    assert_eq!(
        merged(&all_buckets(store, &a, false).await)
            .counts()
            .attempts,
        counted as u64
    );
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
    ];
    assert_eq!(store.record_stats(&samples).await.unwrap(), 6);

    let window = |source: &Source, endpoint: bool, since, until| {
        let source = source.clone();
        async move {
            store
                .stats_buckets(
                    &source.tenant_id,
                    &source.app_id,
                    endpoint.then_some(&source.endpoint_id),
                    since,
                    until,
                )
                .await
                .unwrap()
        }
    };
    // [since, until): the start is included, the end is not.
    let one = window(&a, true, at(1, 0), at(2, 0)).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].start, at(1, 0));
    assert_eq!(one[0].bucket.counts().attempts, 2);
    assert!(window(&a, true, at(1, 1), at(2, 0)).await.is_empty());
    assert_eq!(window(&a, true, t0(), at(3, 0)).await.len(), 3);

    // The application's buckets: both of its endpoints, none of the other app.
    let app = window(&a, false, t0(), at(3, 0)).await;
    assert_eq!(app.len(), 4);
    assert!(app.windows(2).all(|w| w[0].start <= w[1].start), "by start");
    assert_eq!(merged(&app).counts().attempts, 5);
    assert!(app.iter().all(|x| x.endpoint_id != c.endpoint_id));
    let other_app = window(&c, false, t0(), at(3, 0)).await;
    assert_eq!(other_app.len(), 1);
    assert_eq!(other_app[0].endpoint_id, c.endpoint_id);
    // An endpoint named with the wrong application is not found.
    let wrong_app = Source {
        app_id: c.app_id.clone(),
        ..a.clone()
    };
    assert!(window(&wrong_app, true, t0(), at(3, 0)).await.is_empty());

    // Another tenant sees nothing, even with the right ids.
    let intruder = Source {
        tenant_id: TenantId::new(),
        ..a.clone()
    };
    assert!(window(&intruder, true, t0(), at(3, 0)).await.is_empty());
    assert!(window(&intruder, false, t0(), at(3, 0)).await.is_empty());

    // Hour buckets are returned too, where they start in the window.
    store.roll_up_stats(at(60, 0), t0()).await.unwrap();
    let hours = window(&a, false, t0(), at(1, 0)).await;
    assert_eq!(hours.len(), 2);
    assert!(hours
        .iter()
        .all(|h| h.granularity == StatsGranularity::Hour));
    assert!(window(&a, false, at(1, 0), at(60, 0)).await.is_empty());
}

pub async fn roll_up_keeps_totals_and_quantiles(store: &dyn Store) {
    let a = Source::new();
    let b = a.sibling();
    // 10:00–11:30 for a, 10:00–10:59 for b.
    let first: Vec<StatsSample> = (0..90u64)
        .map(|i| a.sample(i, at(i as i64, 0)))
        .chain((0..60u64).map(|i| b.sample(1000 + i, at(i as i64, 10))))
        .collect();
    assert_eq!(store.record_stats(&first).await.unwrap(), 150);
    let a_first: Vec<_> = first[..90].to_vec();

    // Minutes before 11:00 (60 of a, 60 of b) become two hour buckets.
    let cutoff = at(60, 0);
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 120);
    let buckets = all_buckets(store, &a, true).await;
    let (hours, minutes): (Vec<_>, Vec<_>) = buckets
        .iter()
        .cloned()
        .partition(|x| x.granularity == StatsGranularity::Hour);
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].start, t0());
    assert_eq!(hours[0].bucket, expected(&a_first[..60]));
    assert_eq!(minutes.len(), 30, "11:00–11:29 stay minutes");
    assert!(minutes.iter().all(|m| m.start >= cutoff));
    assert_eq!(merged(&buckets), expected(&a_first));
    for q in [0.5, 0.9, 0.99, 1.0] {
        assert_eq!(
            merged(&buckets).latency_ms(q),
            expected(&a_first).latency_ms(q)
        );
    }
    let b_buckets = all_buckets(store, &b, true).await;
    assert_eq!(b_buckets.len(), 1);
    assert_eq!(b_buckets[0].bucket, expected(&first[90..]));

    // Rolling up again finds nothing old.
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 0);

    // A late attempt lands in a minute bucket of an hour already rolled up;
    // the next roll-up merges it into that hour.
    let late = a.sample(500, at(45, 5));
    assert_eq!(
        store
            .record_stats(std::slice::from_ref(&late))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.roll_up_stats(cutoff, t0()).await.unwrap(), 1);
    let mut a_all = a_first.clone();
    a_all.push(late);
    let buckets = all_buckets(store, &a, true).await;
    assert_eq!(buckets.len(), 31);
    assert_eq!(buckets[0].granularity, StatsGranularity::Hour);
    let mut first_hour = a_first[..60].to_vec();
    first_hour.push(a_all[90].clone());
    assert_eq!(buckets[0].bucket, expected(&first_hour));
    assert_eq!(merged(&buckets), expected(&a_all));

    // Everything rolled up: two hours for a, one for b; totals unchanged.
    assert_eq!(store.roll_up_stats(at(24 * 60, 0), t0()).await.unwrap(), 30);
    let buckets = all_buckets(store, &a, true).await;
    let starts: Vec<_> = buckets.iter().map(|x| x.start).collect();
    assert_eq!(starts, [t0(), at(60, 0)]);
    assert_eq!(merged(&buckets), expected(&a_all));
    let app = all_buckets(store, &a, false).await;
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
    let buckets = all_buckets(store, &source, true).await;
    assert_eq!(buckets[0].bucket.counts().attempts, 10);
}
