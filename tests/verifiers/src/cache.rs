//! Installs made once into `$HOME/.cache/herald/<name>` and shared by every
//! test process after that.
//!
//! Tests run in parallel processes (nextest runs each test in its own), so two
//! of them may find the same install missing at once. A lock file
//! (`<name>.lock`, an OS file lock, released even when its holder is killed)
//! lets one of them build while the others wait and then use its result; the
//! build happens in a private directory renamed into place when complete, so
//! no process ever sees a half-built install, even one left by a killed build.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest one install (creating it and downloading its packages) may take.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// `$HOME/.cache/herald` (under the temporary directory when there is no home).
pub fn root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("herald")
}

/// The directory `name` under [`root`]: as it is when `ready` accepts it,
/// else made anew by `build` (into the directory it is given, which does not
/// exist yet) and checked with `ready` again.
pub fn install(
    name: &str,
    ready: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = root();
    let dir = root.join(name);
    if ready(&dir) {
        return Ok(dir);
    }
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let _lock = lock(&root.join(format!("{name}.lock")))?;
    // Whoever held the lock before may have just installed it.
    if ready(&dir) {
        return Ok(dir);
    }
    remove_abandoned_builds(&root, name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let building = root.join(format!("{name}.building-{}-{nanos}", std::process::id()));
    let built = build(&building).and_then(|()| {
        // What is in the way failed `ready`: a broken or outdated install.
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&building, &dir)
            .map_err(|e| format!("cannot move {} into place: {e}", building.display()))
    });
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&building);
        return Err(e);
    }
    if ready(&dir) {
        Ok(dir)
    } else {
        Err(format!("{} is not usable after installing", dir.display()))
    }
}

/// Holds the exclusive lock on `path` (waiting at most [`INSTALL_TIMEOUT`]
/// plus a minute for another process's install) until dropped.
fn lock(path: &Path) -> Result<File, String> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let deadline = Instant::now() + INSTALL_TIMEOUT + Duration::from_secs(60);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process held {} for longer than an install may take",
                    path.display()
                ))
            }
            // A file system without locks: building in a private directory
            // still keeps parallel installs apart, at the cost of repeating one.
            Err(TryLockError::Error(_)) => return Ok(file),
        }
    }
}

/// Removes `<name>.building-*` directories: with the lock held, no process
/// is building into them any more.
fn remove_abandoned_builds(root: &Path, name: &str) {
    let prefix = format!("{name}.building-");
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
