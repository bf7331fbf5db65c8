//! For tests: Herald's signatures checked by the providers' own verification
//! code, not by Herald's.
//!
//! A [`Case`] is one signed delivery as a receiver gets it (headers, raw body)
//! with the key the receiver configured, the [`Verifier`] to judge it, and
//! the verdict it must reach. [`verify`] runs a batch of cases, one process
//! per language:
//!
//! - `providers.py`, in a venv with the [`python::PROVIDERS`] pins: the
//!   `standardwebhooks`, `svix`, `stripe` and `slack_sdk` libraries, PyNaCl
//!   for Ed25519 (`v1a`), and Shopify's and the custom HMAC header's
//!   documented recipes;
//! - `github.mjs`, in an npm project with `@octokit/webhooks-methods`.
//!
//! [`sign::sign`] goes the other way, for the tests of Herald's inbound
//! webhooks: requests signed by the providers' own signers.
//!
//! The installs are cached under `$HOME/.cache/herald/` ([`cache`]), safe
//! for parallel test processes. When Python, Node or a registry is unusable
//! [`verify`] says why, and the test skips or fails with [`skip_or_fail`].

pub mod cache;
pub mod node;
mod process;
pub mod python;
pub mod sign;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use process::{describe, run, run_ok};

/// Longest one batch of cases may take to verify.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether an unusable service or tool must fail the test instead of skipping
/// it (`HERALD_REQUIRE_SERVICES=1`, as in CI).
pub fn services_required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Skips (returns `None`) with a loud notice, or panics under
/// `HERALD_REQUIRE_SERVICES=1`.
pub fn skip_or_fail<T>(service: &str, why: &str) -> Option<T> {
    if services_required() {
        panic!("{service} is required (HERALD_REQUIRE_SERVICES=1) but unusable: {why}");
    }
    // Straight to stderr, not `eprintln!`, which libtest captures and hides
    // when the test passes: a skip must be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED: {service} is unusable ({why}); set HERALD_REQUIRE_SERVICES=1 to fail instead ***"
    );
    None
}

/// The settings of a custom `hmac` scheme, as the API's `signatureOptions`
/// and herald-signature's `HmacScheme` write them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmacOptions {
    pub header: String,
    /// `sha256`, `sha384`, `sha512` or `sha1`.
    pub algorithm: String,
    /// `hex` or `base64`.
    pub encoding: String,
}

/// Who judges a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verifier {
    /// PyPI `standardwebhooks`, given only the `webhook-*` headers.
    StandardWebhooks,
    /// PyPI `svix` (`svix.webhooks.Webhook`), given only the `svix-*` headers,
    /// as receivers on older Svix SDKs read them.
    Svix,
    /// PyPI `stripe`: `stripe.Webhook.construct_event`.
    Stripe,
    /// npm `@octokit/webhooks-methods`: `verify`.
    Github,
    /// Shopify's documented recipe (Python `hmac`, base64).
    Shopify,
    /// PyPI `slack_sdk`: `SignatureVerifier.is_valid`.
    Slack,
    /// A custom HMAC header, computed as its settings say (Python `hmac`).
    Hmac(HmacOptions),
    /// PyNaCl over the `v1a` entries of `webhook-signature`, with the
    /// `whpk_` public key.
    Ed25519,
}

impl Verifier {
    /// The verifiers a receiver of `scheme` (a `signatureScheme` wire name)
    /// would use; `options` are the `hmac` scheme's.
    ///
    /// # Panics
    ///
    /// On an unknown scheme, or `hmac` without options.
    pub fn for_scheme(scheme: &str, options: Option<&HmacOptions>) -> Vec<Self> {
        match scheme {
            "standard" => vec![Self::StandardWebhooks, Self::Svix],
            "ed25519" => vec![Self::Ed25519],
            "stripe" => vec![Self::Stripe],
            "github" => vec![Self::Github],
            "shopify" => vec![Self::Shopify],
            "slack" => vec![Self::Slack],
            "hmac" => vec![Self::Hmac(
                options.expect("an hmac scheme has options").clone(),
            )],
            other => panic!("no verifier for signature scheme {other:?}"),
        }
    }

    /// The name the scripts dispatch on.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standardwebhooks",
            Self::Svix => "svix",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Hmac(_) => "hmac",
            Self::Ed25519 => "ed25519",
        }
    }

    fn runs_on_node(&self) -> bool {
        matches!(self, Self::Github)
    }
}

/// The verdict a case must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Accept,
    Reject,
}

/// One delivery as its receiver got it, to be judged by one verifier.
#[derive(Clone, Debug)]
pub struct Case {
    /// Says what is checked, for the report.
    pub name: String,
    pub verifier: Verifier,
    /// What the receiver configured: the `whsec_…` secret, or the `whpk_…`
    /// public key for `Ed25519`.
    pub key: String,
    /// The request's headers; verifiers compare names case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    pub expect: Expect,
}

impl Case {
    /// A case that must be accepted.
    pub fn new(
        name: impl Into<String>,
        verifier: Verifier,
        key: impl Into<String>,
        headers: Vec<(String, String)>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            name: name.into(),
            verifier,
            key: key.into(),
            headers,
            body: body.into(),
            expect: Expect::Accept,
        }
    }

    /// This case, but expecting `expect` and named after `what` changed.
    pub fn expecting(mut self, expect: Expect, what: &str) -> Self {
        self.name = format!("{}, {what}", self.name);
        self.expect = expect;
        self
    }

    /// The same delivery with one byte of its body changed, which every
    /// verifier must reject.
    pub fn with_one_byte_changed(&self) -> Self {
        let mut case = self
            .clone()
            .expecting(Expect::Reject, "one body byte changed");
        case.body = change_one_byte(&self.body);
        case
    }
}

/// `body` with one byte changed: the case of its first ASCII letter swapped,
/// which keeps a JSON body valid JSON (letters outside strings are only in
/// `true`, `false` and `null`, which come after a key) and valid UTF-8, so
/// only the signature can tell; the first byte when it has no letter.
///
/// # Panics
///
/// On an empty body.
pub fn change_one_byte(body: &[u8]) -> Vec<u8> {
    let mut changed = body.to_vec();
    let at = body
        .iter()
        .position(u8::is_ascii_alphabetic)
        .unwrap_or_default();
    let byte = changed.get_mut(at).expect("a body to change");
    *byte = if byte.is_ascii_alphabetic() {
        *byte ^ 0x20
    } else {
        byte.wrapping_add(1)
    };
    changed
}

/// How each case was decided.
#[derive(Debug)]
pub struct Report {
    pub verdicts: Vec<Verdict>,
}

/// One case's outcome.
#[derive(Debug)]
pub struct Verdict {
    pub name: String,
    pub expect: Expect,
    pub accepted: bool,
    /// Why a verifier rejected, in its own words.
    pub detail: String,
}

impl Verdict {
    pub fn as_expected(&self) -> bool {
        self.accepted == (self.expect == Expect::Accept)
    }
}

impl Report {
    /// The cases not decided as expected.
    pub fn mismatches(&self) -> Vec<&Verdict> {
        self.verdicts.iter().filter(|v| !v.as_expected()).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for verdict in &self.verdicts {
            writeln!(
                f,
                "{} {}: {}{}",
                if verdict.as_expected() {
                    "ok  "
                } else {
                    "FAIL"
                },
                verdict.name,
                if verdict.accepted { "accept" } else { "reject" },
                if verdict.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", verdict.detail)
                }
            )?;
        }
        let wrong = self.mismatches().len();
        write!(
            f,
            "{}/{} cases decided as expected",
            self.verdicts.len() - wrong,
            self.verdicts.len()
        )
    }
}

/// Installs every verifier (when not cached yet), so that a test can skip
/// before it starts anything else; fails with the reason when Python, Node or
/// their pinned packages are unusable.
pub fn install() -> Result<(), String> {
    python::python_with(python::PROVIDERS)?;
    node::project()?;
    Ok(())
}

/// Has every case judged by its verifier: the Python ones in one process, the
/// Node ones in another. Fails (with the reason) when Python, Node or their
/// pinned packages are unusable; the caller then skips or fails with
/// [`skip_or_fail`]. Blocks: installing takes minutes the first time.
///
/// # Panics
///
/// When a verifier script crashes or answers with something other than one
/// verdict per case: a bug, not a missing tool.
pub fn verify(cases: &[Case]) -> Result<Report, String> {
    let (on_node, on_python): (Vec<_>, Vec<_>) = cases
        .iter()
        .enumerate()
        .partition(|(_, case)| case.verifier.runs_on_node());
    let mut verdicts: Vec<Option<Verdict>> = cases.iter().map(|_| None).collect();
    if !on_python.is_empty() {
        let python = python::python_with(python::PROVIDERS)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.py");
        run_batch(Command::new(python).arg(script), &on_python, &mut verdicts);
    }
    if !on_node.is_empty() {
        let project = node::project()?;
        run_batch(
            Command::new("node").arg(project.join("github.mjs")),
            &on_node,
            &mut verdicts,
        );
    }
    Ok(Report {
        verdicts: verdicts
            .into_iter()
            .map(|v| v.expect("every case has a verdict"))
            .collect(),
    })
}

/// The verdicts a script reports: `[{"id": …, "accepted": …, "detail": …}]`.
#[derive(Deserialize)]
struct ScriptVerdict {
    id: usize,
    accepted: bool,
    #[serde(default)]
    detail: String,
}

/// Runs `script CASES.json` over `batch` (cases with their index in the whole
/// list) and fills in their verdicts.
fn run_batch(script: &mut Command, batch: &[(usize, &Case)], verdicts: &mut [Option<Verdict>]) {
    let input: Vec<Value> = batch
        .iter()
        .map(|(id, case)| {
            let headers: BTreeMap<String, &str> = case
                .headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
                .collect();
            json!({
                "id": id,
                "verifier": case.verifier.name(),
                "hmac": match &case.verifier {
                    Verifier::Hmac(options) => json!(options),
                    _ => Value::Null,
                },
                "key": case.key,
                "headers": headers,
                "body": STANDARD.encode(&case.body),
            })
        })
        .collect();
    let (answered, output): (Vec<ScriptVerdict>, _) =
        run_json_script(script, "herald-verifier-cases", &input);
    assert_eq!(
        answered.len(),
        batch.len(),
        "{script:?} answered for other cases than it was given: {}",
        describe(&output)
    );
    for verdict in answered {
        let case = cases_by_id(batch, verdict.id)
            .unwrap_or_else(|| panic!("{script:?} answered for unknown case {}", verdict.id));
        verdicts[verdict.id] = Some(Verdict {
            name: format!("{}: {}", case.verifier.name(), case.name),
            expect: case.expect,
            accepted: verdict.accepted,
            detail: verdict.detail,
        });
    }
}

fn cases_by_id<'a>(batch: &[(usize, &'a Case)], id: usize) -> Option<&'a Case> {
    batch.iter().find(|(i, _)| *i == id).map(|(_, case)| *case)
}

/// Runs `script` with `input` written to a temporary JSON file as its one
/// argument, in a bare environment, and reads its stdout as JSON; panics
/// (naming the script) when it fails or prints something else. Shared by the
/// verifiers and the signers (`sign.rs`).
pub(crate) fn run_json_script<T: serde::de::DeserializeOwned>(
    script: &mut Command,
    prefix: &str,
    input: &[Value],
) -> (T, std::process::Output) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(input).expect("input serialises"))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    // Only what the scripts need: no proxies, PYTHON* or NODE_* settings of
    // the developer's shell can change what they do.
    script
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let output = run(script, SCRIPT_TIMEOUT);
    let _ = std::fs::remove_file(&path);
    let output = output.unwrap_or_else(|e| panic!("{e}"));
    let answered = serde_json::from_slice(&output.stdout)
        .ok()
        .filter(|_| output.status.success())
        .unwrap_or_else(|| panic!("{script:?} crashed: {}", describe(&output)));
    (answered, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_byte_swaps_the_case_of_the_first_letter() {
        let body = "{\"type\":\"Zoë\"}".as_bytes();
        let changed = change_one_byte(body);
        assert_eq!(changed, "{\"Type\":\"Zoë\"}".as_bytes());
        assert_eq!(change_one_byte(b"[1]"), b"\\1]");
    }
}
