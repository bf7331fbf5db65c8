//! The `herald` binary's library: configuration, start-up wiring and the CLI
//! commands, kept out of `main` so they can be tested.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use herald_api::{ApiConfig, AppState, JwtKeys};
use herald_cache::{IdempotencyStore, MemoryIdempotency, RedisIdempotency};
use herald_queue::{MemoryQueue, Queue, RabbitQueue};
use herald_store::{PgStore, SqliteStore, Store};
use herald_worker::{Dispatcher, Sender, SenderConfig, SsrfPolicy, WorkerConfig};

pub use config::{Config, Role};

/// Opens the store named by `database_url`: a PostgreSQL pool (connected
/// lazily, so a server can start before its database), or the embedded
/// SQLite file (created if missing).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect_lazy(url, config.database_max_connections)
            .context("invalid HERALD_DATABASE_URL")?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url, config.database_max_connections)
            .await
            .with_context(|| format!("cannot open the SQLite database {url}"))?;
        return Ok(Arc::new(store));
    }
    bail!("HERALD_DATABASE_URL must start with sqlite:// or postgres://");
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
                PgStore::create_database_if_missing(&config.database_url).await?;
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
        .setting_or_insert("jwt_secret", &generated)
        .await
        .context("failed to load the JWT secret")?;
    Ok(JwtKeys::from_secret(stored.as_bytes()))
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

/// Opens the delivery queue: RabbitMQ when configured, else in process.
async fn open_queue(config: &Config) -> anyhow::Result<Arc<dyn Queue>> {
    match &config.amqp_url {
        Some(url) => {
            let queue = RabbitQueue::connect(url, &config.amqp_prefix)
                .await
                .context("failed to connect to RabbitMQ")?;
            Ok(Arc::new(queue))
        }
        None => Ok(Arc::new(MemoryQueue::new())),
    }
}

/// Starts the worker role: the outbox relay and the task consumer.
async fn start_worker(
    config: &Config,
    store: Arc<dyn Store>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<dyn Queue>, tokio::task::JoinHandle<()>)> {
    let queue = open_queue(config).await?;
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
        ..SenderConfig::default()
    })
    .context("failed to build the HTTP client")?;
    let dispatcher = Arc::new(Dispatcher::new(
        store,
        queue.clone(),
        sender,
        WorkerConfig {
            concurrency: config.worker_concurrency,
            endpoint_concurrency: config.endpoint_concurrency,
            lease: Duration::from_secs(config.delivery_lease),
            schedule: config.retry_schedule()?,
            ..WorkerConfig::default()
        },
    ));
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
    let both = tokio::spawn(async move {
        let _ = relay.await;
        let _ = consumer.await;
    });
    Ok((queue, both))
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
    let store = open_store(&config).await?;
    announce_backends(&config);
    migrate(&config, store.as_ref(), &shutdown, None).await?;
    if roles.contains(&Role::Api) {
        create_default_tenant(&config, store.as_ref()).await?;
    }
    let worker = if roles.contains(&Role::Worker) {
        Some(start_worker(&config, store.clone(), &shutdown).await?)
    } else {
        None
    };
    match (roles.contains(&Role::Api), listener) {
        (true, Some(listener)) => serve_api(&config, store, listener, shutdown.clone()).await?,
        (true, None) => bail!("the api role needs a listener"),
        (false, _) => shutdown.cancelled().await,
    }
    if let Some((queue, loops)) = worker {
        // In-flight attempts finish before the queue closes (so retries can
        // still be scheduled); anything unacknowledged is redelivered.
        let _ = loops.await;
        queue.close().await;
        tracing::info!("worker stopped");
    }
    Ok(())
}

async fn serve_api(
    config: &Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let idempotency = idempotency_store(config).await?;
    let address = listener.local_addr()?;
    let state = AppState {
        jwt: jwt_keys(config, store.as_ref()).await?,
        store,
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
        }),
    };
    tracing::info!(%address, "api listening");
    // A plain line on stdout that scripts and tests can wait for.
    println!("herald: listening on http://{address} (docs at http://{address}/docs)");
    axum::serve(listener, herald_api::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("http server failed")?;
    tracing::info!("api stopped");
    Ok(())
}
