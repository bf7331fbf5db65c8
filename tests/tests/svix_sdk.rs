//! Wire compatibility with the official Svix Python SDK: runs
//! `tests/python/svix_compat.py` (svix==2.9.1 from PyPI, in a cached virtual
//! environment) against a real server.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use herald_e2e::{skip_or_fail, Herald, Options};
use tokio::process::Command;

const SVIX_VERSION: &str = "2.9.1";
/// Longest the compatibility script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest creating the virtual environment and installing the SDK may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// `$HOME/.cache/herald/svix-venv-<version>`, shared by every run.
fn venv_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache")
        .join("herald")
        .join(format!("svix-venv-{SVIX_VERSION}"))
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Runs a command to completion within `limit`, killing it on timeout.
async fn run(command: &mut Command, limit: Duration) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(limit, command.output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("cannot run {command:?}: {e}")),
        Err(_) => Err(format!(
            "{command:?} did not finish within {} s",
            limit.as_secs()
        )),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether the venv's interpreter exists and can import the pinned SDK.
async fn has_svix(venv: &Path) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let check = format!(
        "import importlib.metadata as m, svix; assert m.version('svix') == '{SVIX_VERSION}'"
    );
    matches!(
        run(Command::new(&python).args(["-c", &check]), Duration::from_secs(60)).await,
        Ok(output) if output.status.success()
    )
}

/// The Python interpreter of a virtual environment with svix installed: the
/// cached one, or a new one built in a private directory and renamed into
/// place atomically, so parallel runs never see (or break) a half-built venv.
async fn svix_python() -> Result<PathBuf, String> {
    let venv = venv_dir();
    if has_svix(&venv).await {
        return Ok(venv_python(&venv));
    }
    let version = run(
        Command::new("python3").arg("--version"),
        Duration::from_secs(30),
    )
    .await?;
    if !version.status.success() {
        return Err(format!("python3 --version failed: {}", describe(&version)));
    }
    let parent = venv.parent().expect("venv dir has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let building = parent.join(format!(
        "svix-venv-{SVIX_VERSION}.building-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = build_venv(&building).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first (a directory cannot be renamed over a
        // non-empty one), or a broken venv is in the way.
        if has_svix(&venv).await {
            let _ = std::fs::remove_dir_all(&building);
            return Ok(venv_python(&venv));
        }
        let _ = std::fs::remove_dir_all(&venv);
        if let Err(e) = std::fs::rename(&building, &venv) {
            let _ = std::fs::remove_dir_all(&building);
            if !has_svix(&venv).await {
                return Err(format!(
                    "cannot move the new venv to {}: {e}",
                    venv.display()
                ));
            }
        }
    }
    if has_svix(&venv).await {
        Ok(venv_python(&venv))
    } else {
        Err(format!(
            "{} cannot import svix after installation",
            venv.display()
        ))
    }
}

async fn build_venv(dir: &Path) -> Result<(), String> {
    let created = run(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        INSTALL_TIMEOUT,
    )
    .await?;
    if !created.status.success() {
        return Err(format!("python3 -m venv failed: {}", describe(&created)));
    }
    let installed = run(
        Command::new(venv_python(dir))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .arg(format!("svix=={SVIX_VERSION}")),
        INSTALL_TIMEOUT,
    )
    .await?;
    if !installed.status.success() {
        return Err(format!(
            "pip install svix=={SVIX_VERSION} failed: {}",
            describe(&installed)
        ));
    }
    if !has_svix(dir).await {
        return Err(format!(
            "svix=={SVIX_VERSION} installed but cannot be imported"
        ));
    }
    Ok(())
}

#[tokio::test]
async fn the_official_svix_python_sdk_works_against_herald() {
    // With the worker: the script checks the attempt log of real deliveries
    // to a receiver it runs on 127.0.0.1.
    let Some(herald) = Herald::start_with(Options {
        worker: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let python = match svix_python().await {
        Ok(python) => python,
        Err(why) => {
            skip_or_fail::<()>("Python svix SDK", &why);
            return;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("svix_compat.py");
    assert!(script.exists(), "{} is missing", script.display());

    let mut command = Command::new(&python);
    command
        .arg(&script)
        // Only what the script needs: no proxies or PYTHON* settings of the
        // developer's shell can change how it talks to the local server.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HERALD_URL", &herald.url)
        .env("HERALD_TOKEN", &herald.tenant.key);
    let outcome = run(&mut command, SCRIPT_TIMEOUT).await;
    let output = match outcome {
        Ok(output) => output,
        Err(e) => panic!("{e}\n--- server log ---\n{}", herald.log()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|l| l.trim() == "svix sdk compat: ok"),
        "svix_compat.py failed against {}: {}\n--- server log ---\n{}",
        herald.url,
        describe(&output),
        herald.log()
    );
}
