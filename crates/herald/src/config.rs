//! Configuration: built-in defaults, then `herald.toml` (or `--config FILE`),
//! then `HERALD_*` environment variables; later sources win. Validated once at
//! start-up. `docs/configuration.md` documents every field.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use herald_store::main_key::{MainKey, MainKeys};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Everything Herald can be configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP API listens on (`HERALD_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// Base URL clients use to reach the API, for links Herald hands out
    /// (`HERALD_PUBLIC_URL`); defaults to `http://<listen_addr>`.
    pub public_url: Option<String>,
    /// Database URL (`HERALD_DATABASE_URL`): `sqlite://PATH` (the embedded
    /// mode, the default: `./herald.db`) or `postgres://…`.
    pub database_url: String,
    /// Most connections each process keeps to the database (`HERALD_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Redis URL for idempotency records shared by API replicas
    /// (`HERALD_REDIS_URL`); unset keeps them in process memory.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key Herald writes (`HERALD_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// Roles this process runs, comma-separated (`HERALD_ROLES`).
    pub roles: String,
    /// RabbitMQ URL for delivery work (`HERALD_AMQP_URL`); unset = an
    /// in-process queue (the database outbox keeps it durable).
    pub amqp_url: Option<String>,
    /// Prefix of every RabbitMQ exchange and queue name (`HERALD_AMQP_PREFIX`).
    pub amqp_prefix: String,
    /// Seconds between delivery attempts, comma-separated (`HERALD_RETRY_SCHEDULE`).
    pub retry_schedule: String,
    /// CIDRs exempt from the SSRF guard, comma-separated (`HERALD_SSRF_ALLOW`).
    pub ssrf_allow: String,
    /// Delivery attempts in flight at once per worker process (`HERALD_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// Seconds one delivery attempt may take (`HERALD_DELIVERY_TIMEOUT`).
    pub delivery_timeout: u64,
    /// Most attempts in flight at once to one endpoint per worker process
    /// (`HERALD_ENDPOINT_CONCURRENCY`), so a slow endpoint cannot take every
    /// slot; as many again wait in the worker, and further ones are parked in
    /// the database until the endpoint catches up.
    pub endpoint_concurrency: usize,
    /// Attempts in flight at once for one tenant per worker process
    /// (`HERALD_TENANT_CONCURRENCY`); 0 = three quarters of
    /// `worker_concurrency`. A tenant's tasks beyond it (and as many again
    /// waiting) are parked, so its backlog cannot starve other tenants.
    pub tenant_concurrency: usize,
    /// Messages one tenant may post per second (`HERALD_TENANT_MESSAGE_RATE`;
    /// 0 = no limit); beyond it, 429 with `Retry-After`.
    pub tenant_message_rate: u16,
    /// Messages a tenant may post at once above its rate
    /// (`HERALD_TENANT_MESSAGE_BURST`; 0 = one second's worth).
    pub tenant_message_burst: u32,
    /// Most endpoints one application may have (`HERALD_MAX_ENDPOINTS_PER_APP`).
    pub max_endpoints_per_app: u32,
    /// Largest message payload, in bytes (`HERALD_MAX_PAYLOAD_BYTES`); larger
    /// ones get 413.
    pub max_payload_bytes: usize,
    /// Seconds a worker uses its copy of an endpoint (URL, secrets, headers,
    /// disabled) before reading it again (`HERALD_ENDPOINT_CACHE_TTL`): a
    /// change to an endpoint applies to messages accepted after it at once,
    /// and to messages already waiting within this time. 0 = read every time.
    pub endpoint_cache_ttl: u64,
    /// Consecutive failed attempts that open an endpoint's circuit breaker
    /// (`HERALD_BREAKER_FAILURES`; 0 = no breaker). While open, the endpoint's
    /// deliveries wait without attempts; then one probe decides.
    pub breaker_failures: u32,
    /// Seconds a breaker stays open before its first probe
    /// (`HERALD_BREAKER_COOLDOWN`), doubled for each failed probe up to 10 min.
    pub breaker_cooldown: u64,
    /// Seconds an endpoint may fail without a success before it is disabled
    /// (`HERALD_AUTO_DISABLE_AFTER`; 0 = never), once it has also failed
    /// `HERALD_AUTO_DISABLE_FAILURES` attempts in a row.
    pub auto_disable_after: u64,
    pub auto_disable_failures: u32,
    /// Seconds a delivery handed to the queue may go unanswered before the
    /// outbox relay hands it out again (`HERALD_DELIVERY_LEASE`): the bound on
    /// how long a task lost with a killed worker waits. Keep it above the
    /// longest time a task may wait in the queue, or busy queues get duplicates.
    pub delivery_lease: u64,
    /// Seconds a message's payload is kept when the message names no
    /// `payloadRetentionPeriod`/`payloadRetentionHours` (`HERALD_PAYLOAD_RETENTION`).
    pub payload_retention: u64,
    /// Seconds messages, their deliveries and attempts are kept before the
    /// retention job deletes them (`HERALD_RETENTION`; 0 = kept for good).
    pub retention: u64,
    /// Seconds between two rounds of the retention job (`HERALD_RETENTION_INTERVAL`).
    pub retention_interval: u64,
    /// Bearer token of the `/admin/v1` API (`HERALD_ADMIN_TOKEN`); unset = admin API off.
    #[serde(skip_serializing)]
    pub admin_token: Option<SecretString>,
    /// Key that seals endpoint secrets, sensitive header values and the
    /// stored JWT secret in the database (`HERALD_MAIN_KEY`, 32 bytes in
    /// base64); unset = they are stored as given.
    #[serde(skip_serializing)]
    pub main_key: Option<SecretString>,
    /// Main keys that are read but never seal, comma-separated
    /// (`HERALD_MAIN_KEY_PREVIOUS`): rotated-out keys until `herald main-key
    /// reseal` has moved everything to `HERALD_MAIN_KEY`, or a key being
    /// rolled out, held by every process before any seals with it.
    #[serde(skip_serializing)]
    pub main_key_previous: Option<SecretString>,
    /// HS256 secret of app-scoped tokens (`HERALD_JWT_SECRET`); unset = generated
    /// on first start and stored in the database, shared by every process.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// On the first start of an embedded (SQLite) server, create a tenant
    /// named `default` and print its API key (`HERALD_DEFAULT_TENANT`).
    pub default_tenant: bool,
    /// Largest request body accepted, in bytes (`HERALD_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request's head, the request line and
    /// headers (`HERALD_HTTP_HEADER_TIMEOUT`), counted from when the server
    /// starts waiting for it: when the connection opens or when the previous
    /// response on it has been sent. Past it the connection is closed.
    pub http_header_timeout: u64,
    /// Seconds a request body may take to arrive once Herald starts reading it
    /// (`HERALD_HTTP_BODY_TIMEOUT`); past it the answer is 408.
    pub http_body_timeout: u64,
    /// Seconds a connection with no request in progress may go without a byte
    /// read or written before it is closed (`HERALD_HTTP_IDLE_TIMEOUT`).
    pub http_idle_timeout: u64,
    /// Most connections each HTTP listener (API, metrics) holds open at once
    /// (`HERALD_HTTP_MAX_CONNECTIONS`); further ones wait in the kernel's
    /// listen backlog until one closes.
    pub http_max_connections: usize,
    /// Log filter in tracing `EnvFilter` syntax (`HERALD_LOG`).
    pub log: String,
    /// `text` or `json` (`HERALD_LOG_FORMAT`).
    pub log_format: String,
    /// Address of a second listener serving only `/metrics` and `/health`
    /// (`HERALD_METRICS_ADDR`): how a process without the api role is
    /// scraped; unset = none. The API serves `/metrics` on its own listener
    /// either way.
    pub metrics_addr: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (`HERALD_METRICS_TOKEN`, at least 16
    /// characters); unset = `/metrics` is open.
    #[serde(skip_serializing)]
    pub metrics_token: Option<SecretString>,
    /// Who may show the console in a frame (`HERALD_CONSOLE_FRAME_ANCESTORS`):
    /// space-separated origins (`https://app.example.com`), `'self'`, or
    /// `'none'` (the default: nobody).
    pub console_frame_ancestors: String,
    /// Seconds a stopping process (SIGTERM or SIGINT) may take to finish what
    /// it has in flight before it exits anyway (`HERALD_SHUTDOWN_TIMEOUT`);
    /// whatever is unfinished then is redelivered, never lost.
    pub shutdown_timeout: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "sqlite://herald.db".into(),
            database_max_connections: 20,
            redis_url: None,
            redis_prefix: "herald:".into(),
            roles: "api,worker,stats".into(),
            amqp_url: None,
            amqp_prefix: "herald".into(),
            retry_schedule: "5,300,1800,7200,18000,36000,36000".into(),
            ssrf_allow: String::new(),
            worker_concurrency: 64,
            delivery_timeout: 15,
            endpoint_concurrency: 16,
            tenant_concurrency: 0,
            tenant_message_rate: 0,
            tenant_message_burst: 0,
            max_endpoints_per_app: 1000,
            max_payload_bytes: 1024 * 1024,
            endpoint_cache_ttl: 1,
            delivery_lease: 300,
            payload_retention: 90 * 24 * 60 * 60,
            retention: 90 * 24 * 60 * 60,
            retention_interval: 60,
            breaker_failures: 10,
            breaker_cooldown: 30,
            auto_disable_after: 5 * 24 * 60 * 60,
            auto_disable_failures: 10,
            admin_token: None,
            jwt_secret: None,
            main_key: None,
            main_key_previous: None,
            default_tenant: true,
            max_body_bytes: 1024 * 1024,
            http_header_timeout: 10,
            http_body_timeout: 30,
            http_idle_timeout: 60,
            http_max_connections: 10_000,
            log: "info,sqlx=warn".into(),
            log_format: "text".into(),
            metrics_addr: None,
            metrics_token: None,
            console_frame_ancestors: "'none'".into(),
            shutdown_timeout: 25,
        }
    }
}

/// A role a `herald serve` process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
    Stats,
}

impl Config {
    /// Loads defaults ← TOML file ← environment. A missing default `herald.toml`
    /// is fine; a missing file named explicitly is an error.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("herald.toml")),
        }
        let mut config: Config = figment
            .merge(HeraldEnv)
            .extract()
            .context("invalid configuration")?;
        config.treat_empty_as_unset();
        config.validate()?;
        Ok(config)
    }

    /// `HERALD_ADMIN_TOKEN=` (empty) means "not set", as it does for most tools,
    /// rather than "an empty token", which would be a security hole.
    fn treat_empty_as_unset(&mut self) {
        let blank = |s: &SecretString| s.expose_secret().trim().is_empty();
        if self.admin_token.as_ref().is_some_and(blank) {
            self.admin_token = None;
        }
        if self.jwt_secret.as_ref().is_some_and(blank) {
            self.jwt_secret = None;
        }
        if self.metrics_token.as_ref().is_some_and(blank) {
            self.metrics_token = None;
        }
        if self.main_key.as_ref().is_some_and(blank) {
            self.main_key = None;
        }
        if self.main_key_previous.as_ref().is_some_and(blank) {
            self.main_key_previous = None;
        }
        for url in [
            &mut self.redis_url,
            &mut self.public_url,
            &mut self.amqp_url,
        ] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                *url = None;
            }
        }
    }

    /// Attempts in flight at once for one tenant per worker process.
    pub fn tenant_concurrency(&self) -> usize {
        match self.tenant_concurrency {
            0 => self.worker_concurrency.saturating_mul(3).div_ceil(4),
            n => n,
        }
    }

    /// The main keys: `HERALD_MAIN_KEY` seals, it and
    /// `HERALD_MAIN_KEY_PREVIOUS` open.
    pub fn main_keys(&self) -> anyhow::Result<MainKeys> {
        let current = self
            .main_key
            .as_ref()
            .map(|key| MainKey::parse(key.expose_secret()))
            .transpose()
            .context("HERALD_MAIN_KEY is invalid")?;
        let previous = self
            .main_key_previous
            .as_ref()
            .map(|keys| {
                keys.expose_secret()
                    .split(',')
                    .filter(|key| !key.trim().is_empty())
                    .map(MainKey::parse)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .context("HERALD_MAIN_KEY_PREVIOUS is invalid")?
            .unwrap_or_default();
        MainKeys::new(current, previous).context("invalid main keys")
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.roles()?;
        self.main_keys()?;
        self.retry_schedule()?;
        self.ssrf_allow()?;
        if self.worker_concurrency == 0 {
            bail!("HERALD_WORKER_CONCURRENCY must be at least 1");
        }
        if !(1..=300).contains(&self.delivery_timeout) {
            bail!("HERALD_DELIVERY_TIMEOUT must be between 1 and 300 seconds");
        }
        if self.max_endpoints_per_app == 0 {
            bail!("HERALD_MAX_ENDPOINTS_PER_APP must be at least 1");
        }
        if self.max_payload_bytes < 2 {
            bail!("HERALD_MAX_PAYLOAD_BYTES must be at least 2 (the payload `{{}}`)");
        }
        if self.endpoint_concurrency == 0 {
            bail!("HERALD_ENDPOINT_CONCURRENCY must be at least 1");
        }
        // A lease shorter than an attempt would hand out tasks still in flight.
        if self.delivery_lease < self.delivery_timeout + 5 || self.delivery_lease > 86_400 {
            bail!(
                "HERALD_DELIVERY_LEASE must be between HERALD_DELIVERY_TIMEOUT + 5 ({}) and 86400 seconds",
                self.delivery_timeout + 5
            );
        }
        if !(1..=3600).contains(&self.breaker_cooldown) {
            bail!("HERALD_BREAKER_COOLDOWN must be between 1 and 3600 seconds");
        }
        if self.auto_disable_after > 0 && self.auto_disable_failures == 0 {
            bail!("HERALD_AUTO_DISABLE_FAILURES must be at least 1");
        }
        if !(1..=10 * 365 * 86_400).contains(&self.payload_retention) {
            bail!("HERALD_PAYLOAD_RETENTION must be between 1 second and 10 years (315360000)");
        }
        if self.retention > 10 * 365 * 86_400 {
            bail!("HERALD_RETENTION must be at most 10 years (315360000 seconds); 0 keeps messages for good");
        }
        if !(1..=86_400).contains(&self.retention_interval) {
            bail!("HERALD_RETENTION_INTERVAL must be between 1 and 86400 seconds");
        }
        if !(1..=3600).contains(&self.shutdown_timeout) {
            bail!("HERALD_SHUTDOWN_TIMEOUT must be between 1 and 3600 seconds");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "HERALD_LOG_FORMAT must be 'text' or 'json', not '{}'",
                self.log_format
            );
        }
        self.console_frame_ancestors()?;
        if self.max_body_bytes < 1024 {
            bail!("HERALD_MAX_BODY_BYTES must be at least 1024");
        }
        for (name, seconds) in [
            ("HERALD_HTTP_HEADER_TIMEOUT", self.http_header_timeout),
            ("HERALD_HTTP_BODY_TIMEOUT", self.http_body_timeout),
            ("HERALD_HTTP_IDLE_TIMEOUT", self.http_idle_timeout),
        ] {
            if !(1..=3600).contains(&seconds) {
                bail!("{name} must be between 1 and 3600 seconds");
            }
        }
        if !(1..=1_000_000).contains(&self.http_max_connections) {
            bail!("HERALD_HTTP_MAX_CONNECTIONS must be between 1 and 1000000");
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            bail!("HERALD_ADMIN_TOKEN must be at least 16 characters long");
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 32)
        {
            bail!("HERALD_JWT_SECRET must be at least 32 characters long");
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().len() < 16)
        {
            bail!("HERALD_METRICS_TOKEN must be at least 16 characters long");
        }
        Ok(())
    }

    pub fn retry_schedule(&self) -> anyhow::Result<herald_core::retry::RetrySchedule> {
        herald_core::retry::RetrySchedule::parse(&self.retry_schedule)
            .with_context(|| format!("invalid HERALD_RETRY_SCHEDULE '{}'", self.retry_schedule))
    }

    pub fn ssrf_allow(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.ssrf_allow
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|cidr| {
                cidr.parse::<ipnet::IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("invalid CIDR '{cidr}' in HERALD_SSRF_ALLOW"))
            })
            .collect()
    }

    /// The console's CSP `frame-ancestors` sources, each checked: they end up
    /// in a response header, where a `;` or `,` would add directives.
    pub fn console_frame_ancestors(&self) -> anyhow::Result<String> {
        let sources: Vec<&str> = self.console_frame_ancestors.split_whitespace().collect();
        if sources.is_empty() {
            bail!(
                "HERALD_CONSOLE_FRAME_ANCESTORS must name at least one source ('none' for nobody)"
            );
        }
        for source in &sources {
            let keyword = matches!(*source, "'none'" | "'self'");
            // An origin is exactly what the URL parser serialises it as: no
            // path, query, fragment or user, and nothing (`;`, `,`) the parser
            // lets through in a host but a CSP would read as more directives.
            let origin = url::Url::parse(source).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.origin().ascii_serialization() == *source
                    && !source.contains([';', ','])
            });
            if !keyword && origin.is_none() {
                bail!(
                    "HERALD_CONSOLE_FRAME_ANCESTORS: '{source}' is not an origin like https://app.example.com, 'self' or 'none'"
                );
            }
        }
        if sources.len() > 1 && sources.contains(&"'none'") {
            bail!("HERALD_CONSOLE_FRAME_ANCESTORS: 'none' cannot be combined with other sources");
        }
        Ok(sources.join(" "))
    }

    /// Whether the database is the embedded SQLite one.
    pub fn is_embedded(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The roles named by `roles`, refusing ones this build does not have.
    pub fn roles(&self) -> anyhow::Result<Vec<Role>> {
        let mut roles = Vec::new();
        for name in self
            .roles
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match name {
                "api" => roles.push(Role::Api),
                "worker" => roles.push(Role::Worker),
                "stats" => roles.push(Role::Stats),
                other => bail!("unknown role '{other}' (known: api, worker, stats)"),
            }
        }
        if roles.is_empty() {
            bail!("HERALD_ROLES names no role");
        }
        Ok(roles)
    }
}

/// The `HERALD_*` environment variables, read as written. figment's `Env`
/// provider types every value, so `HERALD_RETRY_SCHEDULE=5` would arrive as a
/// number where a string is expected, and `HERALD_ADMIN_TOKEN=0123…` would
/// lose its leading zero. Here only settings whose default is a number or a
/// boolean are parsed; every other value stays the string it was.
struct HeraldEnv;

impl HeraldEnv {
    const PREFIX: &'static str = "HERALD_";
}

impl figment::Provider for HeraldEnv {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable(s)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let defaults = serde_json::to_value(Config::default()).map_err(|e| e.to_string())?;
        let mut dict = figment::value::Dict::new();
        for (key, raw) in std::env::vars() {
            let Some(name) = key.strip_prefix(Self::PREFIX) else {
                continue;
            };
            let name = name.to_lowercase();
            // An empty optional setting is unset (`HERALD_METRICS_ADDR=` must
            // not fail to parse as an address).
            if raw.trim().is_empty() && defaults.get(&name).is_some_and(|d| d.is_null()) {
                continue;
            }
            let typed = defaults
                .get(&name)
                .is_some_and(|d| d.is_number() || d.is_boolean());
            let value = if typed {
                raw.parse::<figment::value::Value>()
                    .unwrap_or_else(|_| figment::value::Value::from(raw))
            } else {
                figment::value::Value::from(raw)
            };
            dict.insert(name, value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_are_origins_or_keywords_only() {
        let with = |value: &str| Config {
            console_frame_ancestors: value.into(),
            ..Config::default()
        };
        for good in [
            "'none'",
            "'self'",
            "https://app.example.com",
            "  https://app.example.com   'self' http://localhost:3000 ",
        ] {
            assert!(with(good).console_frame_ancestors().is_ok(), "{good}");
        }
        assert_eq!(
            with(" https://a.example  'self' ")
                .console_frame_ancestors()
                .unwrap(),
            "https://a.example 'self'"
        );
        for bad in [
            "",
            "*",
            "https://a.example/",
            "https://a.example/path",
            "https://a.example#;sandbox",
            "https://user@a.example",
            "https://a.example;script-src",
            "ftp://a.example",
            "'none' https://a.example",
            "'unsafe-inline'",
        ] {
            assert!(with(bad).console_frame_ancestors().is_err(), "{bad:?}");
        }
    }

    /// docs/configuration.md's table and the struct cannot drift: every
    /// setting has a row, every row is a setting, and every default the table
    /// gives is the struct's default.
    #[test]
    fn the_configuration_reference_matches_the_struct() {
        let docs = include_str!("../../../docs/configuration.md");
        let defaults = serde_json::to_value(Config::default()).expect("serializable defaults");
        let defaults = defaults.as_object().expect("an object");
        // Secrets are never serialized; they default to unset.
        let secrets = [
            "admin_token",
            "jwt_secret",
            "metrics_token",
            "main_key",
            "main_key_previous",
        ];
        let mut documented = std::collections::BTreeSet::new();
        for row in docs.lines().filter(|l| l.starts_with("| `HERALD_")) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let name = cells[0].trim_matches('`');
            let default = *cells.last().expect("a default column");
            if name == "HERALD_CONFIG" {
                continue; // The file to read, not a setting in it.
            }
            let field = name
                .strip_prefix("HERALD_")
                .expect("a HERALD_ variable")
                .to_lowercase();
            assert!(
                documented.insert(field.clone()),
                "{name} has two rows in docs/configuration.md"
            );
            let expected = if secrets.contains(&field.as_str()) {
                None
            } else {
                let value = defaults.get(&field).unwrap_or_else(|| {
                    panic!("docs/configuration.md documents {name}, which is no setting")
                });
                match value {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) if s.is_empty() => Some("empty".to_owned()),
                    serde_json::Value::String(s) => Some(format!("`{s}`")),
                    other => Some(format!("`{other}`")),
                }
            };
            match expected {
                None => assert!(
                    default.starts_with("unset"),
                    "{name} defaults to unset, docs/configuration.md says {default}"
                ),
                Some(expected) => assert_eq!(
                    default, expected,
                    "the default of {name} in docs/configuration.md"
                ),
            }
        }
        for field in defaults.keys().map(String::as_str).chain(secrets) {
            assert!(
                documented.contains(field),
                "docs/configuration.md lacks HERALD_{}",
                field.to_uppercase()
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the error type.
    fn numeric_environment_values_are_read_as_written() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_RETRY_SCHEDULE", "5");
            jail.set_env("HERALD_AMQP_PREFIX", "2024");
            jail.set_env("HERALD_ADMIN_TOKEN", "01234567890123456789");
            jail.set_env("HERALD_WORKER_CONCURRENCY", "8");
            let config = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(config.retry_schedule, "5");
            assert_eq!(config.amqp_prefix, "2024");
            assert_eq!(
                config
                    .admin_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                Some("01234567890123456789".to_owned())
            );
            assert_eq!(config.worker_concurrency, 8);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the error type.
    fn metrics_settings_are_read_and_checked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_METRICS_ADDR", "");
            jail.set_env("HERALD_METRICS_TOKEN", "");
            let config = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(config.metrics_addr, None);
            assert!(config.metrics_token.is_none());

            jail.set_env("HERALD_METRICS_ADDR", "127.0.0.1:9464");
            jail.set_env("HERALD_METRICS_TOKEN", "scrape-0123456789");
            let config = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(
                config.metrics_addr,
                Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
            );
            assert_eq!(
                config
                    .metrics_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                Some("scrape-0123456789".to_owned())
            );

            jail.set_env("HERALD_METRICS_TOKEN", "short");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn unknown_roles_are_refused() {
        let config = Config {
            roles: "api,mailer".into(),
            ..Config::default()
        };
        assert!(config.roles().is_err());
        assert!(Config::default().roles().is_ok());
        let stats = Config {
            roles: "stats".into(),
            ..Config::default()
        };
        assert_eq!(stats.roles().unwrap(), vec![Role::Stats]);
    }
}
