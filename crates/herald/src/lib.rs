//! The `herald` binary's library: configuration, start-up wiring and the CLI
//! commands, kept out of `main` so they can be tested.

pub mod config;
pub mod http;
pub mod listen;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use herald_api::{ApiConfig, AppState, JwtKeys};
use herald_cache::throttle::{MemoryThrottle, RedisThrottle, Throttle};
use herald_cache::{IdempotencyStore, MemoryIdempotency, RedisIdempotency};
use herald_queue::{EventBus, MemoryQueue, Queue, RabbitQueue};
use herald_store::{SqlStore, Store};
use herald_worker::{
    DeadLetterDrain, Dispatcher, RetentionConfig, RetentionJob, Sender, SenderConfig, SsrfPolicy,
    WorkerConfig,
};

pub use config::{Config, Role};

/// Opens the store named by `database_url`: a PostgreSQL pool (connected
/// lazily, so a server can start before its database), or the embedded
/// SQLite file (created if missing).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<SqlStore>> {
    let url = config.database_url.as_str();
    let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        SqlStore::postgres(url, config.database_max_connections)
            .context("invalid HERALD_DATABASE_URL")?
    } else if url.starts_with("sqlite:") {
        SqlStore::sqlite(url, config.database_max_connections)
            .await
            .with_context(|| format!("cannot open the SQLite database {url}"))?
    } else {
        bail!("HERALD_DATABASE_URL must start with sqlite:// or postgres://");
    };
    Ok(Arc::new(store.with_main_keys(config.main_keys()?)))
}

/// Checks that this process holds every main key that sealed a secret in
/// the database (a wrong or missing `HERALD_MAIN_KEY` stops it here) and
/// says how secrets are stored, on stdout and in the log.
pub async fn check_main_keys(store: &SqlStore) -> anyhow::Result<()> {
    match store.check_main_keys().await? {
        Some(id) => {
            tracing::info!("secrets at rest sealed with main key {id}");
            println!("herald: secrets at rest sealed with main key {id} (XChaCha20-Poly1305)");
        }
        None => {
            tracing::warn!("HERALD_MAIN_KEY is unset: secrets at rest are stored unencrypted");
            println!("herald: secrets at rest unencrypted (HERALD_MAIN_KEY unset)");
        }
    }
    Ok(())
}

/// Applies migrations, retrying with backoff while the database is unreachable,
/// so a server started before its database comes up waits instead of dying.
/// With `give_up_after`, a one-shot command fails instead of waiting forever.
pub async fn migrate(
    config: &Config,
    store: &dyn Store,
    shutdown: &CancellationToken,
    give_up_after: Option<Duration>,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = async {
            if config.database_url.starts_with("postgres") {
                SqlStore::create_postgres_database(&config.database_url).await?;
            }
            store.migrate().await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(herald_store::StoreError::Unavailable(e))
                if give_up_after.is_some_and(|limit| started.elapsed() >= limit) =>
            {
                return Err(e).context("the database is unreachable");
            }
            Err(herald_store::StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database unavailable, retrying migrations");
            }
            Err(e) => return Err(e).context("failed to apply migrations"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => bail!("shut down before the database became available"),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The JWT secret: configured, or generated once and shared through the database.
async fn jwt_keys(config: &Config, store: &dyn Store) -> anyhow::Result<JwtKeys> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(JwtKeys::from_secret(secret.expose_secret().as_bytes()));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let generated = base64::engine::general_purpose::STANDARD.encode(bytes);
    let stored = store
        .secret_setting_or_insert(herald_store::sealing::JWT_SECRET, &generated)
        .await
        .context("failed to load the JWT secret")?;
    Ok(JwtKeys::from_secret(stored.as_bytes()))
}

/// The rate limiter every process of the deployment shares: on Redis when
/// it is configured; `None` leaves each process its own in memory.
async fn shared_throttle(config: &Config) -> anyhow::Result<Option<Arc<dyn Throttle>>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let throttle = RedisThrottle::connect(url, &config.redis_prefix)
        .await
        .context("failed to connect to Redis")?;
    Ok(Some(Arc::new(throttle)))
}

async fn idempotency_store(config: &Config) -> anyhow::Result<Arc<dyn IdempotencyStore>> {
    match &config.redis_url {
        Some(url) => {
            let redis = RedisIdempotency::connect(url, &config.redis_prefix)
                .await
                .context("failed to connect to Redis")?;
            Ok(Arc::new(redis))
        }
        None => Ok(Arc::new(MemoryIdempotency::new())),
    }
}

/// The delivery queue and the attempt-event bus of this process: RabbitMQ
/// when configured, else one in-process queue that the worker and the stats
/// role share.
#[derive(Clone)]
struct Broker {
    queue: Arc<dyn Queue>,
    events: Arc<dyn EventBus>,
}

async fn open_broker(config: &Config) -> anyhow::Result<Broker> {
    match &config.amqp_url {
        Some(url) => {
            let rabbit = Arc::new(
                RabbitQueue::connect(url, &config.amqp_prefix)
                    .await
                    .context("failed to connect to RabbitMQ")?,
            );
            Ok(Broker {
                queue: rabbit.clone(),
                events: rabbit,
            })
        }
        None => {
            let memory = Arc::new(MemoryQueue::new());
            Ok(Broker {
                queue: memory.clone(),
                events: memory,
            })
        }
    }
}

/// Publishes the queue's depths as gauges every few seconds.
async fn watch_queue_depths(queue: Arc<dyn Queue>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match queue.depths().await {
            Ok(depths) => herald_worker::metrics::queue_depths(&depths),
            Err(error) => tracing::debug!(%error, "could not read queue depths"),
        }
    }
}

/// Starts the stats role: the aggregator that counts attempt events.
fn start_stats(
    store: Arc<dyn Store>,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let events = broker.events.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let config = herald_stats::AggregatorConfig::default();
        if let Err(error) = herald_stats::run(store, events, config, shutdown).await {
            tracing::error!(%error, "stats aggregator stopped");
        }
    })
}

/// Starts the worker role: the outbox relay, the task consumer and the
/// dead-letter drain.
async fn start_worker(
    config: &Config,
    store: Arc<dyn Store>,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let queue = broker.queue.clone();
    // Attempt events go to RabbitMQ whether or not a stats process runs yet
    // (its queue keeps them); in process, only to a stats role in this process.
    let publish_events = config.amqp_url.is_some() || config.roles()?.contains(&Role::Stats);
    if config.amqp_url.is_none() {
        // With the in-process queue this process is the only worker on the
        // database (the embedded mode): whatever the previous one had in
        // flight died with it, so it is due again now, not after a lease.
        let released = store
            .release_claims()
            .await
            .context("failed to release the previous process's claims")?;
        if released > 0 {
            tracing::info!(
                released,
                "deliveries in flight at the last stop are due again"
            );
        }
    }
    let sender = Sender::new(SenderConfig {
        timeout: Duration::from_secs(config.delivery_timeout),
        ssrf: SsrfPolicy::new(config.ssrf_allow()?),
        // Every attempt an endpoint may have in flight keeps its connection.
        pool_idle_per_host: config.endpoint_concurrency,
        ..SenderConfig::default()
    })
    .context("failed to build the HTTP client")?;
    let drain = DeadLetterDrain::new(store.clone(), queue.clone());
    let retention = RetentionJob::new(
        store.clone(),
        RetentionConfig {
            retention: (config.retention > 0).then(|| Duration::from_secs(config.retention)),
            interval: Duration::from_secs(config.retention_interval),
            ..RetentionConfig::default()
        },
    );
    let mut dispatcher = Dispatcher::new(
        store,
        queue.clone(),
        sender,
        WorkerConfig {
            concurrency: config.worker_concurrency,
            endpoint_concurrency: config.endpoint_concurrency,
            lease: Duration::from_secs(config.delivery_lease),
            schedule: config.retry_schedule()?,
            endpoint_cache_ttl: Duration::from_secs(config.endpoint_cache_ttl),
            breaker_failures: config.breaker_failures,
            breaker_cooldown: Duration::from_secs(config.breaker_cooldown),
            disable_after: Duration::from_secs(config.auto_disable_after),
            disable_failures: config.auto_disable_failures,
            tenant_concurrency: config.tenant_concurrency(),
            ..WorkerConfig::default()
        },
    );
    // Throttling holds across worker processes through Redis; without it,
    // each process limits on its own (the embedded mode has one).
    if let Some(throttle) = shared_throttle(config).await? {
        dispatcher = dispatcher.with_throttle(throttle);
    }
    if publish_events {
        // Attempts finishing together are announced in one broker message.
        let events = herald_queue::BatchingEventBus::new(broker.events.clone());
        dispatcher = dispatcher.with_events(Arc::new(events));
    }
    let dispatcher = Arc::new(dispatcher);
    tracing::info!(
        queue = if config.amqp_url.is_some() {
            "rabbitmq"
        } else {
            "memory"
        },
        concurrency = config.worker_concurrency,
        "worker started"
    );
    let relay = {
        let dispatcher = dispatcher.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { dispatcher.run_relay(shutdown).await })
    };
    let consumer = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = dispatcher.run_consumer(shutdown).await {
                tracing::error!(%error, "delivery consumer stopped");
            }
        })
    };
    // The bounded dead-letter queue is emptied into the database, the
    // dead-letter view, by every worker (competing for its letters).
    let drain = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { drain.run(shutdown).await })
    };
    // Every worker runs the retention job; the one holding its lease works.
    let retention = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { retention.run(shutdown).await })
    };
    let both = tokio::spawn(async move {
        let _ = relay.await;
        let _ = consumer.await;
        let _ = drain.await;
        let _ = retention.await;
    });
    Ok(both)
}

/// On the first start of an embedded server (no tenant yet), creates the
/// tenant `default` and prints its API key: the one time it is shown.
async fn create_default_tenant(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    if !config.is_embedded() || !config.default_tenant {
        return Ok(());
    }
    let any = store
        .list_tenants(&herald_store::ListQuery {
            limit: 1,
            ..herald_store::ListQuery::default()
        })
        .await
        .context("failed to list tenants")?;
    if !any.items.is_empty() {
        return Ok(());
    }
    let created = herald_api::admin::create_tenant_with_key(store, "default")
        .await
        .map_err(|e| anyhow::anyhow!("failed to create the default tenant: {e}"))?;
    println!(
        "herald: created tenant 'default' ({}); its API key, shown only this once:\n\n    {}\n",
        created.tenant_id, created.key
    );
    Ok(())
}

/// One line naming the backends in use, on stdout and in the log.
fn announce_backends(config: &Config) {
    let store = if config.is_embedded() {
        format!(
            "sqlite ({})",
            config.database_url.trim_start_matches("sqlite://")
        )
    } else {
        "postgres".to_owned()
    };
    let queue = if config.amqp_url.is_some() {
        "rabbitmq"
    } else {
        "in-process"
    };
    let cache = if config.redis_url.is_some() {
        "redis"
    } else {
        "memory"
    };
    tracing::info!(%store, queue, cache, roles = %config.roles, "backends selected");
    println!(
        "herald: store {store}, queue {queue}, idempotency cache {cache}, roles {}",
        config.roles
    );
}

/// Runs the configured roles until `shutdown` is cancelled. `listener` is
/// required when the roles include `api`.
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let roles = config.roles()?;
    // Before the database: a process waiting for it still answers scrapes.
    herald_api::metrics::install();
    if roles.contains(&Role::Api) {
        herald_api::metrics::register();
    }
    if roles.contains(&Role::Worker) {
        herald_worker::metrics::register();
    }
    if roles.contains(&Role::Stats) {
        herald_stats::register_metrics();
    }
    let upkeep = tokio::spawn(herald_api::metrics::run_upkeep(
        shutdown.clone().cancelled_owned(),
    ));
    let metrics_server = match config.metrics_addr {
        Some(address) => Some(serve_metrics(&config, address, shutdown.clone()).await?),
        None => None,
    };
    let store = open_store(&config).await?;
    announce_backends(&config);
    migrate(&config, store.as_ref(), &shutdown, None).await?;
    check_main_keys(&store).await?;
    let store: Arc<dyn Store> = store;
    if roles.contains(&Role::Api) {
        create_default_tenant(&config, store.as_ref()).await?;
    }
    // The api role publishes new deliveries straight to the workers' queue
    // when it can reach it: RabbitMQ, or the in-process queue of a worker in
    // this process. Otherwise the worker's relay hands them out.
    let handoff =
        roles.contains(&Role::Api) && (config.amqp_url.is_some() || roles.contains(&Role::Worker));
    let broker = if handoff || roles.contains(&Role::Worker) || roles.contains(&Role::Stats) {
        Some(open_broker(&config).await?)
    } else {
        None
    };
    let worker = match (&broker, roles.contains(&Role::Worker)) {
        (Some(broker), true) => {
            Some(start_worker(&config, store.clone(), broker, &shutdown).await?)
        }
        _ => None,
    };
    let stats = match (&broker, roles.contains(&Role::Stats)) {
        (Some(broker), true) => Some(start_stats(store.clone(), broker, &shutdown)),
        _ => None,
    };
    let depths = broker
        .as_ref()
        .filter(|_| roles.contains(&Role::Worker) || roles.contains(&Role::Stats))
        .map(|broker| tokio::spawn(watch_queue_depths(broker.queue.clone(), shutdown.clone())));
    match (roles.contains(&Role::Api), listener) {
        (true, Some(listener)) => {
            let handoff = broker.as_ref().filter(|_| handoff).map(|b| b.queue.clone());
            serve_api(&config, store, handoff, listener, shutdown.clone()).await?
        }
        (true, None) => bail!("the api role needs a listener"),
        (false, _) => shutdown.cancelled().await,
    }
    if let Some(loops) = worker {
        // In-flight attempts finish before the queue closes (so retries can
        // still be scheduled); anything unacknowledged is redelivered.
        let _ = loops.await;
        tracing::info!("worker stopped");
    }
    if let Some(aggregator) = stats {
        // A batch being counted is committed or left unacked (redelivered).
        let _ = aggregator.await;
    }
    if let Some(depths) = depths {
        depths.abort();
    }
    if let Some(broker) = broker {
        broker.queue.close().await;
    }
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    let _ = upkeep.await;
    Ok(())
}

/// Ends the process `grace` after `shutdown` is cancelled if it is still
/// running then (`HERALD_SHUTDOWN_TIMEOUT`), so a stop never hangs on a slow
/// endpoint or a stuck client. Nothing is lost by it: tasks not acknowledged
/// go back to the queue when the broker connection drops, and deliveries
/// marked in flight fall due again when their lease ends.
pub fn exit_after_grace(shutdown: CancellationToken, grace: Duration) {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        // A thread of its own, not a task: dropping the runtime at the end of
        // `main` waits for blocking tasks (a DNS lookup, say), and the timer
        // must outlive that.
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            tracing::error!(
                grace_secs = grace.as_secs(),
                "shutdown did not finish within HERALD_SHUTDOWN_TIMEOUT; exiting with work in flight, which will be redelivered"
            );
            std::process::exit(1);
        });
    });
}

/// What `herald healthcheck` asks: the API's `/api/v1/health` (which checks
/// the database) when this process runs the api role, else `/health` on the
/// metrics listener. An unspecified listen address (`0.0.0.0`, `[::]`) is
/// asked on loopback.
pub fn health_url(config: &Config) -> anyhow::Result<String> {
    let local = |mut address: std::net::SocketAddr| {
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        address
    };
    if config.roles()?.contains(&Role::Api) {
        return Ok(format!(
            "http://{}/api/v1/health",
            local(config.listen_addr)
        ));
    }
    match config.metrics_addr {
        Some(address) => Ok(format!("http://{}/health", local(address))),
        None => bail!(
            "a process without the api role serves nothing to check unless HERALD_METRICS_ADDR is set"
        ),
    }
}

/// Asks `url` once; healthy means a 2xx answer within five seconds.
pub async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("failed to build the HTTP client")?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    Ok(())
}

/// The bearer token `/metrics` requires, if any.
fn metrics_token(config: &Config) -> Option<String> {
    config
        .metrics_token
        .as_ref()
        .map(|t| t.expose_secret().trim().to_owned())
}

/// Serves `/metrics` and `/health` on `HERALD_METRICS_ADDR` until `shutdown`:
/// how a process without the api role is scraped.
async fn serve_metrics(
    config: &Config,
    address: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (HERALD_METRICS_ADDR)"))?;
    let address = listener.local_addr()?;
    let app = herald_api::metrics::standalone_router(metrics_token(config));
    tracing::info!(%address, "metrics listening");
    println!("herald: metrics on http://{address}/metrics");
    Ok(tokio::spawn(http::serve(
        listener,
        app,
        connection_limits(config),
        shutdown,
    )))
}

/// The `HERALD_HTTP_*` limits of every listener's connections.
fn connection_limits(config: &Config) -> http::ConnectionLimits {
    http::ConnectionLimits {
        header_timeout: Duration::from_secs(config.http_header_timeout),
        idle_timeout: Duration::from_secs(config.http_idle_timeout),
        max_connections: config.http_max_connections,
    }
}

async fn serve_api(
    config: &Config,
    store: Arc<dyn Store>,
    handoff: Option<Arc<dyn Queue>>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let idempotency = idempotency_store(config).await?;
    let message_throttle = match shared_throttle(config).await? {
        Some(throttle) => throttle,
        None => Arc::new(MemoryThrottle::new()),
    };
    let limits = Arc::new(herald_api::limits::TenantLimits {
        message_rate: (config.tenant_message_rate > 0).then_some(config.tenant_message_rate),
        message_burst: match config.tenant_message_burst {
            0 => u32::from(config.tenant_message_rate).max(1),
            n => n,
        },
        max_endpoints_per_app: config.max_endpoints_per_app,
        max_payload_bytes: config.max_payload_bytes,
    });
    let address = listener.local_addr()?;
    let state = AppState {
        jwt: jwt_keys(config, store.as_ref()).await?,
        store: store.clone(),
        idempotency,
        config: Arc::new(ApiConfig {
            // Built from the bound address, so port 0 yields the real port.
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{address}")),
            admin_token: config
                .admin_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            max_body_bytes: config.max_body_bytes,
            payload_retention: chrono::Duration::seconds(config.payload_retention as i64),
            body_timeout: Duration::from_secs(config.http_body_timeout),
            metrics_token: metrics_token(config),
            limits: limits.clone(),
            console_frame_ancestors: config.console_frame_ancestors()?,
        }),
        accepter: herald_api::accept::Accepter::start(store.clone(), handoff),
        api_keys: Default::default(),
        revoked_tokens: Default::default(),
        sources: Default::default(),
        message_rate: herald_api::limits::MessageRate::new(limits, message_throttle),
    };
    tracing::info!(%address, "api listening");
    // A plain line on stdout that scripts and tests can wait for.
    println!("herald: listening on http://{address} (docs at http://{address}/docs)");
    http::serve(
        listener,
        herald_api::router(state),
        connection_limits(config),
        shutdown,
    )
    .await;
    tracing::info!("api stopped");
    Ok(())
}
