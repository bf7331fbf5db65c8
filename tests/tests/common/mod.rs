//! Helpers shared by some test files (each `tests/*.rs` file is its own crate,
//! so each includes this with `mod common;` and uses what it needs).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use herald_e2e::{skip_or_fail, Herald};
use herald_verifiers::python::{python_with, PROVIDERS};
use herald_verifiers::{describe, run};

/// A connection to the server's own database.
pub async fn db(herald: &Herald) -> sqlx::AnyConnection {
    herald.db().await
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Longest one script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `tests/python/{script}` against `herald`, with `env` added to its
/// environment, and returns its stdout, or
/// `None` (after a notice) when Python or the pinned packages are unusable and
/// services are optional. Fails unless the script exits 0 and prints `ok_line`.
pub async fn run_script(
    herald: &Herald,
    script: &str,
    ok_line: &str,
    env: &[(&str, &str)],
) -> Option<String> {
    // Installing blocks for minutes the first time, and the scripts as long as
    // they run: off the runtime's thread.
    let python = match tokio::task::spawn_blocking(|| python_with(PROVIDERS))
        .await
        .expect("install task")
    {
        Ok(python) => python,
        Err(why) => return skip_or_fail("Python and the pinned PyPI packages", &why),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    assert!(path.exists(), "{} is missing", path.display());
    let mut command = Command::new(&python);
    command
        .arg(&path)
        // Only what the script needs: no proxies or PYTHON* settings of the
        // developer's shell can change how it talks to the local server.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HERALD_URL", &herald.url)
        .env("HERALD_TOKEN", &herald.tenant.key)
        .envs(env.iter().copied());
    let output = match tokio::task::spawn_blocking(move || run(&mut command, SCRIPT_TIMEOUT))
        .await
        .expect("script task")
    {
        Ok(output) => output,
        Err(e) => panic!("{e}\n--- server log ---\n{}", herald.log()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.lines().any(|l| l.trim() == ok_line),
        "{script} failed against {}: {}\n--- server log ---\n{}",
        herald.url,
        describe(&output),
        herald.log()
    );
    Some(stdout)
}
