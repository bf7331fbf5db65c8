//! How long the stats query for a 24 h window takes as the number of attempts
//! in it grows: 10 thousand, 100 thousand and 1 million attempts.
//!
//! `record_stats` writes every attempt into its minute bucket and its hour
//! bucket, and an hourly report reads only hour buckets — 25 for one endpoint
//! and a 24 h window that does not start on the hour (the window counts whole
//! hours) — so its cost should depend on the number of hour buckets, not on
//! the number of attempts they count. For each N the bench creates a fresh
//! store, one tenant, application and endpoint, feeds N attempts spread
//! uniformly over the 24 hours before the last full minute through
//! `Store::record_stats` (setup, not measured; its time is printed), then
//! measures `herald_stats::report` for that window, hourly points, for the
//! endpoint and for the whole application.
//!
//! SQLite (a temporary file) always; PostgreSQL too when
//! `HERALD_BENCH_DATABASE_URL` names a server's administrative database
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`): a fresh database per
//! N is created next to it and dropped afterwards.
//!
//! ```text
//! HERALD_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench -p herald-stats --bench query
//! ```
//!
//! `HERALD_BENCH_SIZES=10000,100000` runs other sizes.

use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor};

use herald_core::{ApplicationId, AttemptId, EndpointId, ErrorClass, TenantId};
use herald_stats::Granularity;
use herald_store::{
    Application, Endpoint, EndpointSecrets, SqlStore, StatsGranularity, StatsSample, Store, Tenant,
};

/// The attempt counts measured, unless `HERALD_BENCH_SIZES` says otherwise.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Samples per `record_stats` call while populating.
const BATCH: usize = 5_000;
const WINDOW: TimeDelta = TimeDelta::hours(24);

fn sizes() -> Vec<usize> {
    match std::env::var("HERALD_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .expect("HERALD_BENCH_SIZES")
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What keeps a fresh store's data alive, and removes it afterwards.
enum Storage {
    Sqlite {
        store: SqlStore,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: SqlStore,
        admin_url: String,
        name: String,
    },
}

/// A populated store and the window to report on.
struct Fixture {
    storage: Storage,
    tenant_id: TenantId,
    app_id: ApplicationId,
    endpoint_id: EndpointId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Fixture {
    fn store(&self) -> &dyn Store {
        match &self.storage {
            Storage::Sqlite { store, .. } => store,
            Storage::Postgres { store, .. } => store,
        }
    }

    async fn create(backend: Backend) -> Self {
        let storage = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().join("herald.db");
                let store = SqlStore::sqlite(path.to_str().expect("utf-8 path"), 4)
                    .await
                    .expect("open SQLite store");
                Storage::Sqlite { store, _dir: dir }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url().expect("HERALD_BENCH_DATABASE_URL");
                let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to HERALD_BENCH_DATABASE_URL");
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create the bench database");
                admin.close().await.ok();
                let store = SqlStore::postgres(&with_database(&admin_url, &name), 4).expect("pool");
                Storage::Postgres {
                    store,
                    admin_url,
                    name,
                }
            }
        };
        // The window ends on a minute boundary, so it holds exactly 1,440
        // minute buckets once every minute has an attempt.
        let until = Utc::now()
            .duration_trunc(TimeDelta::minutes(1))
            .expect("truncate to the minute");
        let fixture = Fixture {
            storage,
            tenant_id: TenantId::new(),
            app_id: ApplicationId::new(),
            endpoint_id: EndpointId::new(),
            since: until - WINDOW,
            until,
        };
        let store = fixture.store();
        store.migrate().await.expect("migrate");
        let now = herald_store::now();
        let tenant = Tenant {
            id: fixture.tenant_id.clone(),
            name: "bench".into(),
            created_at: now,
        };
        store.insert_tenant(&tenant).await.expect("insert tenant");
        let app = Application {
            id: fixture.app_id.clone(),
            uid: None,
            name: "bench".into(),
            metadata: Default::default(),
            throttle_rate: None,
            retry_policy: None,
            created_at: now,
            updated_at: now,
        };
        store
            .insert_application(&tenant.id, &app)
            .await
            .expect("insert application");
        let endpoint = Endpoint {
            id: fixture.endpoint_id.clone(),
            app_id: app.id.clone(),
            uid: None,
            url: herald_core::EndpointUrl::parse("https://example.com/hook").unwrap(),
            description: "bench".into(),
            version: 1,
            disabled: false,
            event_types: None,
            channels: None,
            metadata: Default::default(),
            throttle_rate: None,
            headers: Default::default(),
            secrets: EndpointSecrets::new(herald_core::EndpointSecret::generate()),
            signature_scheme: Default::default(),
            retry_policy: None,
            app_retry_policy: None,
            health: Default::default(),
            created_at: now,
            updated_at: now,
        };
        store
            .insert_endpoint(&tenant.id, &endpoint)
            .await
            .expect("insert endpoint");
        fixture
    }

    /// Feeds `n` attempts spread uniformly over the window through
    /// `record_stats`, `BATCH` per call, in time order as the stats role sees
    /// them (each batch then touches a few minute buckets, not all 1,440).
    async fn populate(&self, n: usize, rng: &mut StdRng) {
        let window_us = WINDOW.num_microseconds().expect("window in µs");
        let mut offsets: Vec<i64> = (0..n).map(|_| rng.gen_range(0..window_us)).collect();
        offsets.sort_unstable();
        for chunk in offsets.chunks(BATCH) {
            let samples: Vec<StatsSample> = chunk
                .iter()
                .map(|&offset| self.sample(self.since + TimeDelta::microseconds(offset), rng))
                .collect();
            let counted = self
                .store()
                .record_stats(&samples)
                .await
                .expect("record_stats");
            assert_eq!(counted, samples.len(), "every sample is new");
        }
    }

    /// One attempt at `at`: 90% successes, the rest spread over the failure
    /// classes; durations log-normal around 80 ms (timeouts take ~15 s).
    fn sample(&self, at: DateTime<Utc>, rng: &mut StdRng) -> StatsSample {
        let roll: f64 = rng.gen();
        let error_class = match roll {
            r if r < 0.90 => None,
            r if r < 0.94 => Some(ErrorClass::Http5xx),
            r if r < 0.96 => Some(ErrorClass::Http4xx),
            r if r < 0.975 => Some(ErrorClass::Timeout),
            r if r < 0.99 => Some(ErrorClass::Connect),
            r if r < 0.995 => Some(ErrorClass::Dns),
            _ => Some(ErrorClass::Tls),
        };
        let duration_us = match error_class {
            Some(ErrorClass::Timeout) => 15_000_000 + rng.gen_range(0..50_000),
            Some(ErrorClass::Connect | ErrorClass::Dns | ErrorClass::Tls) => {
                log_normal(rng, 5_000.0, 0.8)
            }
            _ => log_normal(rng, 80_000.0, 1.0),
        };
        StatsSample {
            attempt_id: AttemptId::new(),
            tenant_id: self.tenant_id.clone(),
            app_id: self.app_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            success: error_class.is_none(),
            error_class,
            duration_us,
            at,
        }
    }

    /// How many buckets of `granularity` the store holds for the window
    /// (hours: those an hourly report reads, from the hour `since` is in).
    async fn bucket_count(&self, granularity: StatsGranularity) -> usize {
        let since = match granularity {
            StatsGranularity::Minute => self.since,
            StatsGranularity::Hour => StatsGranularity::Hour.truncate(self.since),
        };
        self.store()
            .stats_buckets(
                &self.tenant_id,
                &self.app_id,
                None,
                granularity,
                since,
                self.until,
            )
            .await
            .expect("stats_buckets")
            .len()
    }

    /// The measured operation: the 24 h report, hourly points.
    async fn report(&self, endpoint_id: Option<&EndpointId>) -> herald_stats::Report {
        herald_stats::report(
            self.store(),
            &self.tenant_id,
            &self.app_id,
            endpoint_id,
            self.since,
            self.until,
            Granularity::Hour,
        )
        .await
        .expect("report")
    }

    async fn remove(self) {
        match self.storage {
            Storage::Sqlite { store, _dir } => store.close().await,
            Storage::Postgres {
                store,
                admin_url,
                name,
            } => {
                store.close().await;
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to HERALD_BENCH_DATABASE_URL");
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .expect("drop the bench database");
                admin.close().await.ok();
            }
        }
    }
}

/// exp(N(ln median, sigma²)) microseconds, at least 1 (Box–Muller).
fn log_normal(rng: &mut StdRng, median_us: f64, sigma: f64) -> u64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.gen();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (median_us * (sigma * z).exp()).round().max(1.0) as u64
}

fn postgres_admin_url() -> Option<String> {
    std::env::var("HERALD_BENCH_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

fn stats_query(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut backends = vec![Backend::Sqlite];
    if postgres_admin_url().is_some() {
        backends.push(Backend::Postgres);
    } else {
        eprintln!("HERALD_BENCH_DATABASE_URL is not set: SQLite only");
    }
    for backend in backends {
        let mut group = c.benchmark_group(format!("stats_report_24h/{}", backend.name()));
        // The same iteration count per sample (as when a query took tens of ms).
        group.sampling_mode(SamplingMode::Flat);
        for n in sizes() {
            let mut rng = StdRng::seed_from_u64(n as u64);
            let fixture = rt.block_on(Fixture::create(backend));
            let started = Instant::now();
            rt.block_on(fixture.populate(n, &mut rng));
            let population = started.elapsed();
            let minutes = rt.block_on(fixture.bucket_count(StatsGranularity::Minute));
            let hours = rt.block_on(fixture.bucket_count(StatsGranularity::Hour));
            let report = rt.block_on(fixture.report(None));
            assert_eq!(
                report.counts.attempts, n as u64,
                "the report counts every attempt"
            );
            println!(
                "setup {} n={n}: populated in {:.1} s ({:.0} attempts/s, {} per record_stats call), \
                 {minutes} minute buckets, {hours} hour buckets (read), {} hourly points, p50 {:?} ms, p99 {:?} ms",
                backend.name(),
                population.as_secs_f64(),
                n as f64 / population.as_secs_f64(),
                BATCH,
                report.series.len(),
                report.latency.p50,
                report.latency.p99,
            );

            let endpoint_id = fixture.endpoint_id.clone();
            group.bench_with_input(BenchmarkId::new("endpoint", n), &fixture, |b, fixture| {
                b.to_async(&rt)
                    .iter(|| async { fixture.report(Some(&endpoint_id)).await })
            });
            group.bench_with_input(
                BenchmarkId::new("application", n),
                &fixture,
                |b, fixture| {
                    b.to_async(&rt)
                        .iter(|| async { fixture.report(None).await })
                },
            );
            rt.block_on(fixture.remove());
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    targets = stats_query
}
criterion_main!(benches);
