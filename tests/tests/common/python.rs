//! A cached Python virtual environment with exact, pinned PyPI packages.
//!
//! The venv lives in `$HOME/.cache/herald/<name>`
//! where the name spells out every pin, so a change of pins builds a new one.
//! A new venv is built in a private directory and renamed into place, so
//! parallel test runs never see (or break) a half-built one.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

/// Longest creating the virtual environment and installing may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Pinned packages: `(name, exact version)`.
pub type Pins = &'static [(&'static str, &'static str)];

/// `$HOME/.cache/herald/venv-<name>-<version>-<name>-<version>…`.
pub fn venv_dir(pins: Pins) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let name: Vec<String> = pins.iter().map(|(n, v)| format!("{n}-{v}")).collect();
    home.join(".cache")
        .join("herald")
        .join(format!("venv-{}", name.join("-")))
}

pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Runs a command to completion within `limit`, killing it on timeout.
pub async fn run(command: &mut Command, limit: Duration) -> Result<Output, String> {
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

pub fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether the venv's interpreter exists and has exactly the pinned versions.
async fn has_pins(venv: &Path, pins: Pins) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let checks: Vec<String> = pins
        .iter()
        .map(|(name, version)| {
            format!("assert m.version('{name}') == '{version}', '{name}'\n__import__('{name}')")
        })
        .collect();
    let check = format!("import importlib.metadata as m\n{}", checks.join("\n"));
    matches!(
        run(Command::new(&python).args(["-c", &check]), Duration::from_secs(60)).await,
        Ok(output) if output.status.success()
    )
}

/// The interpreter of a venv with exactly `pins` installed: the cached one, or
/// a new one.
pub async fn python_with(pins: Pins) -> Result<PathBuf, String> {
    let venv = venv_dir(pins);
    if has_pins(&venv, pins).await {
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
    let file_name = venv
        .file_name()
        .expect("venv dir has a name")
        .to_string_lossy()
        .into_owned();
    let building = parent.join(format!(
        "{file_name}.building-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    if let Err(e) = build_venv(&building, pins).await {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first (a directory cannot be renamed over a
        // non-empty one), or a broken venv is in the way.
        if has_pins(&venv, pins).await {
            let _ = std::fs::remove_dir_all(&building);
            return Ok(venv_python(&venv));
        }
        let _ = std::fs::remove_dir_all(&venv);
        if let Err(e) = std::fs::rename(&building, &venv) {
            let _ = std::fs::remove_dir_all(&building);
            if !has_pins(&venv, pins).await {
                return Err(format!(
                    "cannot move the new venv to {}: {e}",
                    venv.display()
                ));
            }
        }
    }
    // A venv's scripts name its directory, but `python -m pip` and imports
    // work after a rename; check that they do.
    if has_pins(&venv, pins).await {
        Ok(venv_python(&venv))
    } else {
        Err(format!(
            "{} lacks the pinned packages after installation",
            venv.display()
        ))
    }
}

async fn build_venv(dir: &Path, pins: Pins) -> Result<(), String> {
    let created = run(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        INSTALL_TIMEOUT,
    )
    .await?;
    if !created.status.success() {
        return Err(format!("python3 -m venv failed: {}", describe(&created)));
    }
    let requirements: Vec<String> = pins.iter().map(|(n, v)| format!("{n}=={v}")).collect();
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
            .args(&requirements),
        INSTALL_TIMEOUT,
    )
    .await?;
    if !installed.status.success() {
        return Err(format!(
            "pip install {} failed: {}",
            requirements.join(" "),
            describe(&installed)
        ));
    }
    if !has_pins(dir, pins).await {
        return Err(format!(
            "{} installed but not importable at those versions",
            requirements.join(" ")
        ));
    }
    Ok(())
}
