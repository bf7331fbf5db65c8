//! npm projects of the tests, installed with `npm ci` into the install cache
//! ([`crate::cache`]): the Node verifiers ([`project`]: `package.json`,
//! `package-lock.json` and the scripts, in this crate's directory) and any
//! other project a test names with [`install`] (the console's browser test,
//! `tests/browser`).
//!
//! An install holds copies of the project's scripts beside `node_modules`,
//! because Node resolves an ES module's imports from the module's own
//! directory (it has no `NODE_PATH` for them). Its name carries a hash of
//! every file copied, the lockfile included, so a change to any of them
//! installs anew.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cache::{self, INSTALL_TIMEOUT};
use crate::process::run_ok;

/// The files the verifiers' install is made of, from this crate's directory.
const FILES: [&str; 3] = ["package.json", "package-lock.json", "github.mjs"];
/// The oldest Node the pinned packages support (`engines` in every project's
/// `package.json`).
pub const MIN_NODE_MAJOR: u32 = 20;

/// The installed verifiers' project: a directory with [`FILES`] and
/// `node_modules`, built if missing. Blocks (for a while, the first time).
pub fn project() -> Result<PathBuf, String> {
    install(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &FILES,
        "npm-verifiers",
    )
}

/// The installed npm project made of `files` (`package.json`,
/// `package-lock.json` and the scripts) from `source`: a directory of the
/// cache named `{name}-{hash of the files}` with copies of them and
/// `node_modules` as `npm ci` installs it, built if missing. Blocks (for a
/// while, the first time). Fails when `node` is missing or older than
/// [`MIN_NODE_MAJOR`], or when a file is unreadable or npm fails.
pub fn install(source: &Path, files: &[&str], name: &str) -> Result<PathBuf, String> {
    check_node()?;
    let mut contents = Vec::new();
    let mut hash = Sha256::new();
    for file in files {
        let path = source.join(file);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        hash.update(file.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        contents.push((*file, bytes));
    }
    let name = format!("{name}-{}", &hex::encode(hash.finalize())[..16]);
    cache::install(
        &name,
        |dir| is_installed(dir, files),
        |dir| {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (file, bytes) in &contents {
                std::fs::write(dir.join(file), bytes)
                    .map_err(|e| format!("cannot write {file} into {}: {e}", dir.display()))?;
            }
            // Exactly the lockfile's versions, no install scripts run.
            run_ok(
                Command::new("npm")
                    .args([
                        "ci",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                    ])
                    .current_dir(dir),
                INSTALL_TIMEOUT,
            )
            .map(drop)
        },
    )
}

/// Whether `dir` holds a complete install of `files`: npm writes
/// `node_modules/.package-lock.json` once everything is in place.
fn is_installed(dir: &Path, files: &[&str]) -> bool {
    files.iter().all(|file| dir.join(file).is_file())
        && dir
            .join("node_modules")
            .join(".package-lock.json")
            .is_file()
}

/// Fails unless `node` runs and is recent enough.
fn check_node() -> Result<(), String> {
    let output = run_ok(
        Command::new("node").arg("--version"),
        Duration::from_secs(30),
    )?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(format!(
            "node {version} is older than the npm projects of the tests need (v{MIN_NODE_MAJOR})"
        )),
    }
}
