//! The web console and the app portal in a real browser: `tests/browser/
//! console.mjs` (playwright-core driving the system's Chromium, axe-core for
//! accessibility) against the real binary, embedded, with the worker and
//! stats roles and a receiver. It signs in with the tenant key, adds an
//! endpoint, lists and filters messages, compares the endpoint page's numbers
//! and charts with the stats API, resends, checks the app portal's scoping and
//! a read-only token's refusals, CSRF, console errors and CSP violations, and
//! saves a screenshot of every page (the test prints where).
//!
//! The npm project is installed with `npm ci` into the install cache, as the
//! verifiers' is ([`herald_verifiers::node::install`]). No browser is ever
//! downloaded: it runs `$HERALD_CHROMIUM`, else `/usr/bin/chromium`
//! (`scripts/install-browser` installs Debian's). Without Node or the browser
//! the test skips, or fails under `HERALD_REQUIRE_SERVICES=1`.
//!
//! `HERALD_UPDATE_SCREENSHOT=1` also saves the endpoint page's screenshot as
//! `docs/images/console-endpoint.png`, which the README shows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{skip_or_fail, Backend, Herald, Options};
use herald_verifiers::{describe, node, run};

/// The files of the npm project, in `tests/browser`.
const FILES: [&str; 3] = ["package.json", "package-lock.json", "console.mjs"];
/// Longest the script may run (it gives up by itself a little earlier, with
/// a screenshot of the page it failed on).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// What the script prints last when every check passed.
const OK_LINE: &str = "console: ok";
/// The receiver's path the endpoint delivers to.
const RECEIVER_PATH: &str = "console";

/// The workspace's root directory.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
}

/// Where the screenshots go: `$CARGO_TARGET_DIR/console-artifacts`, else
/// `target/console-artifacts` in the workspace.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace().join(dir)
            }
        })
        .unwrap_or_else(|| workspace().join("target"));
    target.join("console-artifacts")
}

/// The browser to drive: `$HERALD_CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("HERALD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The installed npm project, or `None` (after a notice) when Node, npm or
/// the browser is unusable and services are optional.
async fn browser_project() -> Option<PathBuf> {
    let browser = chromium();
    if !browser.is_file() {
        return skip_or_fail(
            "Chromium",
            &format!(
                "{} does not exist (run scripts/install-browser, or set HERALD_CHROMIUM)",
                browser.display()
            ),
        );
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    // Installing blocks for a while the first time: off the runtime's thread.
    match tokio::task::spawn_blocking(move || node::install(&source, &FILES, "npm-browser"))
        .await
        .expect("install task")
    {
        Ok(project) => Some(project),
        Err(why) => skip_or_fail("Node and the pinned npm packages", &why),
    }
}

#[tokio::test]
async fn the_console_and_the_app_portal_work_in_a_real_browser() {
    let Some(project) = browser_project().await else {
        return;
    };
    let herald = Backend::Embedded
        .scope(Herald::start_with(Options {
            worker: true,
            ..Options::default()
        }))
        .await
        .expect("the embedded backend needs no services");
    let receiver = Receiver::start().await;

    let artifacts = artifacts_dir();
    // Only this run's screenshots, never a stale one from an earlier run.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", artifacts.display()));
    println!("console: screenshots go to {}", artifacts.display());

    let mut command = Command::new("node");
    command
        .arg(project.join("console.mjs"))
        .current_dir(&project)
        // Only what the script needs: no proxies or NODE_* settings of the
        // developer's shell can change how it reaches the local server.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("HERALD_URL", &herald.url)
        .env("HERALD_TOKEN", &herald.tenant.key)
        .env("HERALD_RECEIVER_URL", receiver.url(RECEIVER_PATH))
        .env("HERALD_ARTIFACTS", &artifacts)
        .env("HERALD_CHROMIUM", chromium())
        .env(
            "HERALD_SCREENSHOT_PATH",
            workspace().join("docs/images/console-endpoint.png"),
        );
    for name in ["TMPDIR", "HERALD_UPDATE_SCREENSHOT"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || run(&mut command, SCRIPT_TIMEOUT))
        .await
        .expect("script task")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nscreenshots: {}\n--- server log ---\n{}",
                artifacts.display(),
                herald.log()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.lines().any(|line| line.trim() == OK_LINE),
        "console.mjs failed against {} (screenshots, failure.png among them, in {}): {}\n--- server log ---\n{}",
        herald.url,
        artifacts.display(),
        describe(&output),
        herald.log()
    );
    println!(
        "{stdout}console: passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );

    // The deliveries the pages showed are the ones the receiver got.
    let deliveries: usize = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("deliveries: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("console.mjs printed no `deliveries: N`:\n{stdout}"));
    let received = receiver
        .wait_for(RECEIVER_PATH, deliveries, Duration::from_secs(10))
        .await;
    assert_eq!(
        received.len(),
        deliveries,
        "the receiver got other requests than the pages showed"
    );
}
