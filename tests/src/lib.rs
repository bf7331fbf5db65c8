//! The end-to-end harness: starts the real `herald` binary on a random port
//! against a fresh PostgreSQL database per test, and talks HTTP to it.
//!
//! Service-backed tests skip with a loud notice when PostgreSQL (or Redis) is
//! unreachable, and fail instead under `HERALD_REQUIRE_SERVICES=1` (as in CI).

pub mod receiver;
pub mod topology;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;

/// Where the tests find PostgreSQL (a maintenance database they can CREATE DATABASE from).
pub fn postgres_admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Where the tests find Redis.
pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

// One skip policy for every test that needs something outside the process:
// services here, Python and Node for the providers' verifiers.
pub use herald_verifiers::{services_required, skip_or_fail};

/// The `herald` binary cargo built next to this test executable.
///
/// `cargo test --workspace` builds it because the `herald` package has
/// integration tests; `HERALD_BIN` overrides the location.
pub fn herald_bin() -> PathBuf {
    if let Ok(path) = std::env::var("HERALD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: run the suite with `cargo test --workspace` (or set HERALD_BIN)",
        bin.display()
    );
    bin
}

/// Which backends a test's server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, plus RabbitMQ and Redis when a test asks for them: the
    /// production topology. Skips (or fails) when the services are missing.
    Services,
    /// The embedded mode: one process on a SQLite file, the in-process queue
    /// and in-memory idempotency records. Needs nothing installed.
    Embedded,
}

tokio::task_local! {
    static BACKEND: Backend;
}

impl Backend {
    /// The backend of the running test: the one [`e2e_tests!`] set, else
    /// `Services`.
    pub fn current() -> Self {
        BACKEND.try_with(|b| *b).unwrap_or(Backend::Services)
    }

    /// Runs `test` with this backend as [`Backend::current`].
    pub async fn scope<F: std::future::Future>(self, test: F) -> F::Output {
        BACKEND.scope(self, test).await
    }
}

/// Declares end-to-end tests that run twice, as `<name>::services` and
/// `<name>::embedded`: the same checks against both backends. Each test is an
/// `async fn name() { … }` that starts its server with [`Herald::start`] or
/// [`Herald::start_with`], which read [`Backend::current`].
#[macro_export]
macro_rules! e2e_tests {
    ($($(#[$meta:meta])* async fn $name:ident() $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$meta])*
                async fn e2e_test_body() $body

                #[tokio::test]
                async fn services() {
                    $crate::Backend::Services.scope(e2e_test_body()).await
                }

                #[tokio::test]
                async fn embedded() {
                    $crate::Backend::Embedded.scope(e2e_test_body()).await
                }
            }
        )*
    };
}

/// A database that exists for one test and is dropped after it: a PostgreSQL
/// database, or a SQLite file for the embedded backend.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// The SQLite file, for the embedded backend.
    pub sqlite_path: Option<PathBuf>,
}

fn with_database(admin_url: &str, name: &str) -> String {
    match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => format!("{admin_url}/{name}"),
    }
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` when PostgreSQL is unreachable
    /// and services are optional.
    pub async fn create() -> Option<Self> {
        let db = Self::reserve().await?;
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {}", db.name))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Some(db)
    }

    /// A fresh, unused database name (for tests of code that creates the
    /// database itself); dropped afterwards if it was created.
    pub async fn reserve() -> Option<Self> {
        let admin_url = postgres_admin_url();
        let mut conn = match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&admin_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return skip_or_fail("PostgreSQL", &e.to_string()),
            Err(_) => return skip_or_fail("PostgreSQL", "connection timed out"),
        };
        sweep_stale_databases(&mut conn).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = format!("herald_e2e_{now}_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name);
        Some(Self {
            name,
            url,
            sqlite_path: None,
        })
    }

    /// A fresh database of [`Backend::current`], or `None` when the services
    /// are missing and optional.
    pub async fn for_current_backend() -> Option<Self> {
        match Backend::current() {
            Backend::Services => Self::create().await,
            Backend::Embedded => Some(Self::sqlite()),
        }
    }

    /// A SQLite file in the temporary directory that does not exist yet (the
    /// server creates it); removed with its WAL files afterwards.
    pub fn sqlite() -> Self {
        let name = format!("herald_e2e_{}", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(format!("{name}.db"));
        Self {
            url: format!("sqlite://{}", path.display()),
            name,
            sqlite_path: Some(path),
        }
    }

    /// Opens a connection to this database (PostgreSQL or SQLite), for tests
    /// that check what was stored. Queries use `$1` placeholders, which both
    /// accept.
    pub async fn connect(&self) -> sqlx::AnyConnection {
        static DRIVERS: std::sync::Once = std::sync::Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

/// Drops databases left behind by test processes that were killed, so runs
/// never accumulate them.
async fn sweep_stale_databases(conn: &mut sqlx::PgConnection) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'herald_e2e_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 2 * 60 * 60 {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(path) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            return;
        }
        let name = self.name.clone();
        // Drop runs outside async context guarantees; a private runtime on its own
        // thread works whether or not the test's runtime is still alive.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Options for starting a server.
#[derive(Default, Clone)]
pub struct Options {
    /// Keep idempotency records in the local Redis instead of memory.
    pub redis: bool,
    /// Also run the worker and stats roles (in-process queue unless
    /// `rabbit`), allowed to deliver to loopback, retrying every second.
    pub worker: bool,
    /// With `worker`: deliver through RabbitMQ (a queue prefix of its own,
    /// deleted afterwards) instead of the in-process queue.
    pub rabbit: bool,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
}

/// A running `herald serve` process with a tenant ready to use.
pub struct Herald {
    child: Child,
    pub url: String,
    pub admin_token: String,
    /// The first tenant, created through the admin API.
    pub tenant: Tenant,
    pub http: reqwest::Client,
    pub log_path: PathBuf,
    /// The process's whole environment, for [`Herald::restart`].
    env: Vec<(String, String)>,
    // Dropped after the child is killed (fields drop in declaration order after Drop::drop).
    pub db: TestDatabase,
    _rabbit: Option<topology::RabbitCleanup>,
}

/// A tenant and one of its API keys.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub key: String,
}

/// A JSON response: status and parsed body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Herald {
    /// Starts a server with default options, or `None` when services are missing.
    pub async fn start() -> Option<Self> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server on [`Backend::current`]. On the embedded backend,
    /// `redis` and `rabbit` are ignored: it has neither.
    pub async fn start_with(options: Options) -> Option<Self> {
        let backend = Backend::current();
        let db = TestDatabase::for_current_backend().await?;
        let mut env = options.env.clone();
        let options = match backend {
            Backend::Services => options,
            Backend::Embedded => Options {
                redis: false,
                rabbit: false,
                ..options
            },
        };
        // Tenants come from the admin API, as in production.
        env.insert(0, ("HERALD_DEFAULT_TENANT".into(), "false".into()));
        if options.redis {
            let prefix = format!("herald-e2e-{}:", uuid::Uuid::new_v4().simple());
            if !redis_reachable().await {
                return skip_or_fail("Redis", "connection refused or timed out");
            }
            env.push(("HERALD_REDIS_URL".into(), redis_url()));
            env.push(("HERALD_REDIS_PREFIX".into(), prefix));
        }
        let mut rabbit = None;
        if options.rabbit {
            let url = topology::amqp_url();
            if let Err(why) = topology::rabbit_reachable(&url).await {
                return skip_or_fail("RabbitMQ", &why);
            }
            topology::sweep_stale_topologies(&url).await;
            let prefix = topology::fresh_prefix();
            env.push(("HERALD_AMQP_URL".into(), url.clone()));
            env.push(("HERALD_AMQP_PREFIX".into(), prefix.clone()));
            rabbit = Some(topology::RabbitCleanup { url, prefix });
        }
        // Without the worker no test can make Herald reach out to the network.
        let mut roles = vec![("HERALD_ROLES".to_owned(), "api".to_owned())];
        if options.worker {
            roles = vec![
                ("HERALD_ROLES".to_owned(), "api,worker,stats".to_owned()),
                ("HERALD_SSRF_ALLOW".to_owned(), "127.0.0.0/8,::1".to_owned()),
                ("HERALD_RETRY_SCHEDULE".to_owned(), "1,1".to_owned()),
            ];
        }
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let log_path = std::env::temp_dir().join(format!("{}.log", db.name));
        let mut process_env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HERALD_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
            ("HERALD_DATABASE_URL".into(), db.url.clone()),
            ("HERALD_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
            ("HERALD_ADMIN_TOKEN".into(), admin_token.clone()),
            ("HERALD_LOG".into(), "warn,herald=info".into()),
        ];
        process_env.extend(roles);
        process_env.extend(env);
        let log = std::fs::File::create(&log_path).expect("create server log file");
        let (child, url) = spawn_serve(&process_env, log, &log_path);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let mut herald = Self {
            child,
            url,
            admin_token,
            tenant: Tenant {
                id: String::new(),
                key: String::new(),
            },
            http,
            log_path,
            env: process_env,
            db,
            _rabbit: rabbit,
        };
        herald.tenant = herald.create_tenant("first").await;
        Some(herald)
    }

    /// Creates another tenant through the admin API.
    pub async fn create_tenant(&self, name: &str) -> Tenant {
        let reply = self
            .request(
                Method::POST,
                "/admin/v1/tenants",
                Some(&self.admin_token),
                Some(serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "create tenant: {reply:?}"
        );
        Tenant {
            id: reply.body["tenantId"]
                .as_str()
                .expect("tenantId")
                .to_owned(),
            key: reply.body["key"].as_str().expect("key").to_owned(),
        }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches herald");
        Self::reply(response).await
    }

    /// Sends a raw body with the given content type.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches herald");
        Self::reply(response).await
    }

    pub async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    /// Requests as the first tenant.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, Some(&self.tenant.key), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(&self.tenant.key), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PUT, path, Some(&self.tenant.key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(&self.tenant.key), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, Some(&self.tenant.key), None)
            .await
    }

    /// A connection to this server's database, PostgreSQL or SQLite.
    pub async fn db(&self) -> sqlx::AnyConnection {
        self.db.connect().await
    }

    /// The value of one series (name and labels, as exported) in the
    /// server's `/metrics`; 0 when it is not there.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("read /metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Counts rows of a table in this server's database (to prove nothing was stored).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let mut conn = self.db().await;
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .expect("count rows")
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the server process is still running (no input may crash it).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address the API listens on (`127.0.0.1:PORT`).
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Sends the server process SIGTERM (what `docker stop` sends): it stops
    /// gracefully, within `HERALD_SHUTDOWN_TIMEOUT`.
    pub fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            sigterm(self.child.id());
        }
    }

    /// Waits (at most `limit`) for the server process to exit; its status, or
    /// `None` if it is still running then.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        wait_for_exit(|| child.try_wait().ok().flatten(), limit).await
    }

    /// Kills the server process with SIGKILL (no graceful shutdown: requests
    /// in flight get no answer) and waits until it is gone. Its log gets a
    /// line saying so, and goes on in the same file after [`Herald::restart`].
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().expect("SIGKILL the server");
        }
        let status = self.child.wait().expect("wait for the killed server");
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
        {
            use std::io::Write;
            let _ = writeln!(log, "=== test harness: killed with SIGKILL ({status}) ===");
        }
    }

    /// Starts the server again with the same configuration and database (and
    /// so the same tenant), after it stopped or was stopped; kills it first if
    /// it is still running. Its log goes on in the same file. It listens on a
    /// new port: [`Herald::url`] changes.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log_path)
            .expect("open server log file");
        let (child, url) = spawn_serve(&self.env, log, &self.log_path);
        self.child = child;
        self.url = url;
    }

    /// Sets (or with `None` removes) an environment variable of the
    /// server's for its next [`Herald::restart`] and [`Herald::cli`].
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != name);
        if let Some(value) = value {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Runs `herald <args>` with the server's environment (its database,
    /// broker and settings); its exit status and output. Bounded: killed
    /// after 60 s.
    pub async fn cli(&self, args: &[&str]) -> (ExitStatus, String) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_herald(&env, args, Duration::from_secs(60)).await
    }
}

/// Spawns `herald serve` with exactly `env` (and stderr to `log`) and waits
/// (at most 60 s) until it listens; returns it and its base URL.
fn spawn_serve(env: &[(String, String)], log: std::fs::File, log_path: &Path) -> (Child, String) {
    let mut command = Command::new(herald_bin());
    command
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = command.spawn().expect("spawn herald serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = lines_after(stdout, "herald: listening on ");
    match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => {
            let url = rest.split_whitespace().next().unwrap_or_default();
            (child, url.to_owned())
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!("herald did not start within 60 s; its log:\n{log}");
        }
    }
}

/// Reads `stdout` to its end on a thread of its own (so the process never
/// blocks on a full pipe) and sends what follows `prefix` on every line that
/// starts with it.
pub(crate) fn lines_after(
    stdout: std::process::ChildStdout,
    prefix: &'static str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    rx
}

/// Sends SIGTERM to process `pid` (with `kill -TERM`: no signal crate needed).
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

/// Polls `try_wait` (every 50 ms, at most `limit`) until it reports an exit
/// status; `None` if the process is still running at the end.
pub async fn wait_for_exit(
    mut try_wait: impl FnMut() -> Option<ExitStatus>,
    limit: Duration,
) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `herald healthcheck` (with `args`, e.g. `--url URL`) in a process
/// whose whole environment is `env` (as the container's HEALTHCHECK runs it
/// beside the server, with the server's settings); returns its exit status
/// and output. Bounded: killed after 30 s.
pub async fn healthcheck(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let args: Vec<&str> = std::iter::once("healthcheck")
        .chain(args.iter().copied())
        .collect();
    run_herald(env, &args, Duration::from_secs(30)).await
}

/// Runs `herald <args>` in a process whose whole environment is `env` (and
/// `PATH`), outside the workspace (no herald.toml there may change the
/// settings); its exit status and output. Killed after `limit`.
pub async fn run_herald(
    env: &[(&str, &str)],
    args: &[&str],
    limit: Duration,
) -> (ExitStatus, String) {
    let mut child = Command::new(herald_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        // Not the workspace: no herald.toml there may change the settings.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let status = match wait_for_exit(|| child.try_wait().ok().flatten(), limit).await {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald {args:?} did not finish within {limit:?}");
        }
    };
    let output = child.wait_with_output().expect("herald output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, text)
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

async fn redis_reachable() -> bool {
    let address = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}
