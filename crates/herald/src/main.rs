//! `herald`: the command-line entry point. Parses arguments and hands over to
//! the library; nothing here is worth testing on its own.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use herald::{migrate, open_store, run, Config};
use herald_core::{ApiKeyId, TenantId};
use herald_store::ListQuery;

/// How long one-shot commands wait for an unreachable database before failing.
const CLI_DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Multi-tenant webhook sending service"
)]
struct Cli {
    /// Configuration file (default: ./herald.toml when it exists).
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the roles named by HERALD_ROLES.
    Serve,
    /// Applies database migrations and exits.
    Migrate,
    /// Manages tenants and their API keys.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Prints the OpenAPI document.
    Openapi,
    /// Generates a main key and re-seals secrets at rest (HERALD_MAIN_KEY).
    MainKey {
        #[command(subcommand)]
        command: MainKeyCommand,
    },
    /// Exits 0 when this process's configuration names a healthy server: the
    /// API's /api/v1/health, else /health on HERALD_METRICS_ADDR (what the
    /// container image's HEALTHCHECK runs).
    Healthcheck {
        /// Ask this URL instead.
        #[arg(long)]
        url: Option<String>,
    },
    /// Receives webhooks on this machine to test an integration with.
    ///
    /// Answers every POST on any path, verifies its signature with the
    /// endpoint's key, prints it, and lists the last deliveries as JSON at
    /// GET /. Runs until Ctrl-C or SIGTERM.
    Listen(herald::listen::ListenArgs),
}

#[derive(Subcommand)]
enum MainKeyCommand {
    /// Prints a new random main key (32 bytes, base64) for HERALD_MAIN_KEY.
    Generate,
    /// Rewrites every stored secret sealed with HERALD_MAIN_KEY, reading
    /// what older keys (HERALD_MAIN_KEY_PREVIOUS) or no key sealed; after
    /// it, the previous keys can be removed. Safe while Herald runs.
    Reseal {
        /// Store every secret unencrypted again (opened with HERALD_MAIN_KEY
        /// and HERALD_MAIN_KEY_PREVIOUS); afterwards run without a main key.
        #[arg(long)]
        to_plaintext: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Creates a tenant and prints its first API key.
    Create {
        name: String,
        /// Print one JSON line: {"tenantId": "...", "key": "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Lists tenants.
    List,
    /// Creates another API key for a tenant.
    CreateKey {
        tenant_id: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Lists a tenant's API keys (prefixes only).
    Keys { tenant_id: String },
    /// Revokes an API key.
    RevokeKey { tenant_id: String, key_id: String },
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels the token on SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        trigger.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_command(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The cause chain on one line; anyhow's `Debug` would add a
            // backtrace whenever RUST_BACKTRACE is set, noise for an operator.
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    // The commands that need no configuration.
    let command = match cli.command {
        Command::Openapi => {
            print!("{}", herald_api::openapi::openapi_json());
            return Ok(());
        }
        Command::Listen(args) => return herald::listen::listen(args, shutdown_on_signal()).await,
        Command::MainKey {
            command: MainKeyCommand::Generate,
        } => {
            println!("{}", herald_store::main_key::MainKey::generate());
            return Ok(());
        }
        command => command,
    };
    let config = Config::load(cli.config.as_deref())?;
    if let Command::Healthcheck { url } = &command {
        let url = match url {
            Some(url) => url.clone(),
            None => herald::health_url(&config)?,
        };
        herald::healthcheck(&url).await?;
        println!("healthy: {url}");
        return Ok(());
    }
    init_tracing(&config);
    let shutdown = shutdown_on_signal();
    match command {
        Command::Serve => {
            herald::exit_after_grace(
                shutdown.clone(),
                std::time::Duration::from_secs(config.shutdown_timeout),
            );
            let listener = if config.roles()?.contains(&herald::Role::Api) {
                let listener = tokio::net::TcpListener::bind(config.listen_addr)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen_addr))?;
                Some(listener)
            } else {
                None
            };
            run(config, listener, shutdown).await
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            migrate(&config, store.as_ref(), &shutdown, Some(CLI_DATABASE_WAIT)).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant { command } => {
            let store = open_store(&config).await?;
            migrate(&config, store.as_ref(), &shutdown, Some(CLI_DATABASE_WAIT)).await?;
            tenant_command(store.as_ref(), command).await
        }
        Command::MainKey {
            command: MainKeyCommand::Reseal { to_plaintext },
        } => {
            let store = open_store(&config).await?;
            migrate(&config, store.as_ref(), &shutdown, Some(CLI_DATABASE_WAIT)).await?;
            let keys = config.main_keys()?;
            let store = if to_plaintext {
                // Every configured key opens; none seals.
                let all: Vec<_> = keys.all().cloned().collect();
                let keys = herald_store::main_key::MainKeys::new(None, all)?;
                std::sync::Arc::new((*store).clone().with_main_keys(keys))
            } else {
                store
            };
            herald::check_main_keys(&store).await?;
            let done = store.reseal_secrets().await?;
            println!(
                "resealed: {} endpoints rewritten, {} already sealed as wanted, {} sources \
                 rewritten, JWT secret {}",
                done.endpoints,
                done.unchanged,
                done.sources,
                if done.jwt_secret {
                    "rewritten"
                } else {
                    "unchanged"
                }
            );
            if done.raced > 0 {
                anyhow::bail!(
                    "{} endpoints or sources changed while being resealed; run `herald main-key reseal` again",
                    done.raced
                );
            }
            Ok(())
        }
        Command::Openapi
        | Command::Healthcheck { .. }
        | Command::Listen(_)
        | Command::MainKey { .. } => Ok(()),
    }
}

async fn tenant_command(
    store: &dyn herald_store::Store,
    command: TenantCommand,
) -> anyhow::Result<()> {
    let api_error = |e: herald_api::error::ApiError| anyhow::anyhow!("{e}");
    match command {
        TenantCommand::Create { name, json } => {
            let created = herald_api::admin::create_tenant_with_key(store, &name)
                .await
                .map_err(api_error)?;
            if json {
                #[derive(serde::Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Created<'a> {
                    tenant_id: &'a str,
                    key: &'a str,
                }
                let line = Created {
                    tenant_id: &created.tenant_id,
                    key: &created.key,
                };
                println!("{}", serde_json::to_string(&line)?);
            } else {
                println!("tenant  {} ({})", created.tenant_id, created.name);
                println!("api key {}", created.key);
                println!("(the key is shown only once; Herald stores only its hash)");
            }
        }
        TenantCommand::List => {
            let mut query = ListQuery {
                limit: 250,
                ..ListQuery::default()
            };
            loop {
                let page = store.list_tenants(&query).await?;
                for tenant in &page.items {
                    println!(
                        "{}\t{}\t{}",
                        tenant.id,
                        tenant.created_at.to_rfc3339(),
                        tenant.name
                    );
                }
                match page.items.last() {
                    Some(last) if !page.done => {
                        query.cursor = Some(herald_store::Cursor::After(last.id.to_string()))
                    }
                    _ => break,
                }
            }
        }
        TenantCommand::CreateKey { tenant_id, name } => {
            let tenant_id = existing_tenant(store, &tenant_id).await?;
            let (key, record) = herald_api::auth::new_api_key(&tenant_id, &name);
            store.insert_api_key(&tenant_id, &record).await?;
            println!("key id  {}", record.id);
            println!("api key {key}");
        }
        TenantCommand::Keys { tenant_id } => {
            let tenant_id = existing_tenant(store, &tenant_id).await?;
            for key in store.list_api_keys(&tenant_id).await? {
                let state = match key.revoked_at {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "active".into(),
                };
                println!("{}\t{}…\t{}\t{}", key.id, key.prefix, key.name, state);
            }
        }
        TenantCommand::RevokeKey { tenant_id, key_id } => {
            let tenant_id = existing_tenant(store, &tenant_id).await?;
            let key_id = ApiKeyId::parse(&key_id).context("invalid key id")?;
            if !store.revoke_api_key(&tenant_id, &key_id).await? {
                anyhow::bail!("tenant {tenant_id} has no key {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

async fn existing_tenant(
    store: &dyn herald_store::Store,
    tenant_id: &str,
) -> anyhow::Result<TenantId> {
    let tenant_id = TenantId::parse(tenant_id).context("invalid tenant id")?;
    store
        .tenant(&tenant_id)
        .await?
        .with_context(|| format!("no tenant {tenant_id}"))?;
    Ok(tenant_id)
}
