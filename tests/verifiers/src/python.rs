//! A Python virtual environment holding exact, pinned PyPI packages, built
//! once into the install cache ([`crate::cache`]).
//!
//! The venv's directory name spells out every pin, so a change of pins builds
//! a new one instead of reusing the old.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cache::{self, INSTALL_TIMEOUT};
use crate::process::run_ok;

/// One PyPI package at an exact version.
#[derive(Clone, Copy, Debug)]
pub struct Pin {
    /// The name on PyPI.
    pub package: &'static str,
    pub version: &'static str,
    /// The module it installs, imported to check the install.
    pub module: &'static str,
}

/// Pinned packages: a new release cannot change what the tests check without
/// a commit.
pub type Pins = &'static [Pin];

/// The providers' verification libraries (for `verifiers/providers.py`) and
/// the Svix SDK that the e2e compatibility scripts drive.
pub const PROVIDERS: Pins = &[
    Pin {
        package: "standardwebhooks",
        version: "1.1.0",
        module: "standardwebhooks",
    },
    Pin {
        package: "svix",
        version: "2.9.1",
        module: "svix",
    },
    Pin {
        package: "stripe",
        version: "16.1.0",
        module: "stripe",
    },
    Pin {
        package: "slack_sdk",
        version: "3.48.0",
        module: "slack_sdk",
    },
    Pin {
        package: "PyNaCl",
        version: "1.6.2",
        module: "nacl",
    },
];

/// `venv-<package>-<version>-<package>-<version>…`.
pub fn venv_name(pins: Pins) -> String {
    let pins: Vec<String> = pins
        .iter()
        .map(|pin| format!("{}-{}", pin.package, pin.version))
        .collect();
    format!("venv-{}", pins.join("-"))
}

/// The interpreter of a venv with exactly `pins` installed: the cached one, or
/// a new one. Blocks (for minutes, the first time).
pub fn python_with(pins: Pins) -> Result<PathBuf, String> {
    let venv = cache::install(
        &venv_name(pins),
        |dir| has_pins(dir, pins),
        |dir| build_venv(dir, pins),
    )?;
    Ok(interpreter(&venv))
}

fn interpreter(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Whether the venv's interpreter imports every pinned package at its pinned
/// version.
fn has_pins(venv: &Path, pins: Pins) -> bool {
    let python = interpreter(venv);
    if !python.exists() {
        return false;
    }
    let checks: Vec<String> = pins
        .iter()
        .map(|pin| {
            format!(
                "assert m.version({0:?}) == {1:?}, {0:?}\nimport {2}",
                pin.package, pin.version, pin.module
            )
        })
        .collect();
    let check = format!("import importlib.metadata as m\n{}", checks.join("\n"));
    run_ok(
        Command::new(&python).args(["-c", &check]),
        Duration::from_secs(60),
    )
    .is_ok()
}

fn build_venv(dir: &Path, pins: Pins) -> Result<(), String> {
    // `python3 -m venv` needs `ensurepip` (Debian's python3-venv).
    run_ok(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        Duration::from_secs(120),
    )?;
    let requirements: Vec<String> = pins
        .iter()
        .map(|pin| format!("{}=={}", pin.package, pin.version))
        .collect();
    // `python -m pip`, not the `pip` script: the scripts name the directory
    // they were installed in, which is renamed afterwards.
    run_ok(
        Command::new(interpreter(dir))
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
    )?;
    Ok(())
}
