//! The `pgbench` reference ceiling: how many transactions per second the
//! PostgreSQL server itself sustains when each one writes what one message and
//! one delivery attempt need, at the bench's concurrency. Run before the load,
//! never beside it.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};

/// Tables shaped like a message and a delivery attempt; created when absent,
/// dropped afterwards.
const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS bench_message (
        id          TEXT PRIMARY KEY,
        tenant_id   TEXT NOT NULL,
        app_id      TEXT NOT NULL,
        event_type  TEXT NOT NULL,
        payload     BYTEA,
        created_at  TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS bench_attempt (
        id           TEXT PRIMARY KEY,
        msg_id       TEXT NOT NULL,
        endpoint_id  TEXT NOT NULL,
        status       SMALLINT NOT NULL,
        response     TEXT,
        created_at   TIMESTAMPTZ NOT NULL
    );";
const DROP_TABLES: &str = "DROP TABLE IF EXISTS bench_message, bench_attempt";

/// What the reference runs measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PgbenchReport {
    /// pgbench clients (`-c`): the bench's `--concurrency`.
    pub clients: usize,
    /// Seconds each variant ran (`-T`).
    pub seconds: u64,
    /// Size of the payload each message row carries: a bench payload's.
    pub payload_bytes: usize,
    /// Transactions/s of `BEGIN; INSERT message; INSERT attempt; COMMIT`.
    pub two_insert_tps: f64,
    /// Transactions/s of a lone `INSERT message`.
    pub one_insert_tps: f64,
    /// The run's accepted messages/s ÷ `two_insert_tps`.
    pub accept_fraction_of_two_insert: Option<f64>,
}

/// Creates the tables in `url`'s database, runs both variants for `seconds`
/// each with `clients` clients, and drops the tables again.
pub async fn run(
    url: &str,
    clients: usize,
    seconds: u64,
    payload: &[u8],
) -> anyhow::Result<PgbenchReport> {
    let mut conn = PgConnection::connect(url)
        .await
        .context("connecting to --pgbench-url")?;
    sqlx::raw_sql(CREATE_TABLES)
        .execute(&mut conn)
        .await
        .context("creating the pgbench tables")?;
    let measured = async {
        let two = pgbench(url, "two-insert", &script(payload, true), clients, seconds).await?;
        let one = pgbench(url, "one-insert", &script(payload, false), clients, seconds).await?;
        anyhow::Ok((two, one))
    }
    .await;
    sqlx::raw_sql(DROP_TABLES)
        .execute(&mut conn)
        .await
        .context("dropping the pgbench tables")?;
    let (two_insert_tps, one_insert_tps) = measured?;
    Ok(PgbenchReport {
        clients,
        seconds,
        payload_bytes: payload.len(),
        two_insert_tps,
        one_insert_tps,
        accept_fraction_of_two_insert: None,
    })
}

/// A pgbench script writing one message row (with `payload`) and, if
/// `with_attempt`, one attempt row in one transaction. Ids are unique per
/// client and random within it.
fn script(payload: &[u8], with_attempt: bool) -> String {
    let mut hex = String::with_capacity(payload.len() * 2);
    for byte in payload {
        let _ = write!(hex, "{byte:02x}");
    }
    let msg_id = "'msg_' || :client_id || '_' || :r";
    let message = format!(
        "INSERT INTO bench_message (id, tenant_id, app_id, event_type, payload, created_at) \
         VALUES ({msg_id}, 'bench-tenant', 'bench-app', 'bench.event', '\\x{hex}'::bytea, now());"
    );
    let mut script = String::from("\\set r random(1, 1000000000000000)\n");
    if with_attempt {
        let _ = writeln!(
            script,
            "BEGIN;\n{message}\n\
             INSERT INTO bench_attempt (id, msg_id, endpoint_id, status, response, created_at) \
             VALUES ('atmpt_' || :client_id || '_' || :r, {msg_id}, 'bench-endpoint', 200, '', now());\n\
             COMMIT;"
        );
    } else {
        let _ = writeln!(script, "{message}");
    }
    script
}

/// Runs pgbench with `script` (written to a temporary file) and returns its tps.
async fn pgbench(
    url: &str,
    name: &str,
    script: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("herald-bench-{}-{name}.sql", std::process::id()));
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("herald-bench: pgbench {name}, {clients} clients, {seconds} s");
    let output = tokio::process::Command::new("pgbench")
        .arg("-n")
        .arg("-f")
        .arg(&path)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.to_string()])
        .arg(url)
        .output()
        .await;
    let _ = std::fs::remove_file(&path);
    let output = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--pgbench-url needs `pgbench` on PATH (the PostgreSQL client, e.g. \
             `apt-get install postgresql-client`)"
        ),
        other => other.context("running pgbench")?,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output:\n{stdout}"))
}

/// The tps of pgbench's `tps = 1234.56 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let (number, note) = line.trim().strip_prefix("tps = ")?.split_once(' ')?;
        if note.contains("without initial connection time") {
            number.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_15_output() {
        let output = "\
transaction type: /tmp/herald-bench-1-2.sql
scaling factor: 1
query mode: simple
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 123456
number of failed transactions: 0 (0.000%)
latency average = 2.593 ms
initial connection time = 25.170 ms
tps = 12340.567890 (without initial connection time)
";
        assert_eq!(parse_tps(output), Some(12_340.567_89));
        assert_eq!(
            parse_tps("tps = 5.0 (including connections establishing)"),
            None
        );
        assert_eq!(parse_tps("pgbench: error: connection refused"), None);
    }

    #[test]
    fn scripts_write_what_a_message_and_an_attempt_need() {
        let two = script(br#"{"a":1}"#, true);
        assert!(two.starts_with("\\set r random("), "{two}");
        assert!(two.contains("'\\x7b2261223a317d'::bytea"), "{two}");
        for statement in [
            "BEGIN;",
            "INTO bench_message",
            "INTO bench_attempt",
            "COMMIT;",
        ] {
            assert!(two.contains(statement), "{statement} not in {two}");
        }
        let one = script(b"{}", false);
        assert!(one.contains("INTO bench_message"));
        assert!(
            !one.contains("bench_attempt") && !one.contains("BEGIN"),
            "{one}"
        );
    }
}
