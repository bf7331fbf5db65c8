//! Cross-checks Herald's signatures with the providers' own verifiers: the
//! `standardwebhooks`, `svix` and `stripe` packages from PyPI (pinned, in a cached
//! virtual environment at `$HOME/.cache/herald/sig-venv`) and, for GitHub, Shopify
//! and Slack, Python's `hmac` used as their docs show. The Python side is
//! `tests/verify_with_providers.py`.
//!
//! Skips with a loud notice when `python3` or PyPI is unavailable, unless
//! `HERALD_REQUIRE_SERVICES=1`, in which case it fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_signature::{
    format_secret, parse_secret, unix_now, Algorithm, Encoding, HmacScheme, SignatureScheme,
    SigningKey,
};
use serde_json::{json, Value};

/// The packages the venv must hold, pinned so a new release cannot change what
/// "the providers accept" means without a commit.
const PACKAGES: [(&str, &str); 3] = [
    ("standardwebhooks", "1.1.0"),
    ("svix", "2.9.1"),
    ("stripe", "16.1.0"),
];
/// Longest creating the venv and installing the packages may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest the verification script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn services_required() -> bool {
    std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Announces a skip loudly, or panics under `HERALD_REQUIRE_SERVICES=1`.
fn skip_or_fail(why: &str) {
    if services_required() {
        panic!(
            "the provider libraries are required (HERALD_REQUIRE_SERVICES=1) but unusable: {why}"
        );
    }
    // Straight to stderr, not `eprintln!`, which libtest captures and hides when
    // the test passes: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: provider cross-check: {why}; set HERALD_REQUIRE_SERVICES=1 to fail instead ***\n"
    );
}

/// Runs a command to completion within `limit`, killing it on timeout.
fn run(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{command:?} did not finish within {} s",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for {command:?}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn venv_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("herald").join("sig-venv")
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Whether the venv's interpreter imports every pinned package at its pinned version.
fn is_ready(venv: &Path) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let versions: Vec<String> = PACKAGES
        .iter()
        .map(|(name, version)| format!("m.version('{name}') == '{version}'"))
        .collect();
    let check = format!(
        "import importlib.metadata as m, standardwebhooks, svix.webhooks, stripe; assert {}",
        versions.join(" and ")
    );
    matches!(
        run(Command::new(&python).args(["-c", &check]), Duration::from_secs(60)),
        Ok(output) if output.status.success()
    )
}

/// Creates a venv at `dir` and installs the pinned packages into it.
fn build_venv(dir: &Path) -> Result<(), String> {
    let created = run(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        Duration::from_secs(120),
    )?;
    if !created.status.success() {
        return Err(format!("python3 -m venv failed: {}", describe(&created)));
    }
    let pins = PACKAGES.map(|(name, version)| format!("{name}=={version}"));
    let installed = run(
        Command::new(venv_python(dir))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&pins),
        INSTALL_TIMEOUT,
    )?;
    if !installed.status.success() {
        return Err(format!("pip install failed: {}", describe(&installed)));
    }
    Ok(())
}

/// The venv's interpreter: the cached one, or a new one built in a private
/// directory and renamed into place, so parallel runs never see a half-built venv.
fn provider_python() -> Result<PathBuf, String> {
    let venv = venv_dir();
    if is_ready(&venv) {
        return Ok(venv_python(&venv));
    }
    let parent = venv.parent().ok_or("venv directory has no parent")?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let building = parent.join(format!("sig-venv.building-{}-{nanos}", std::process::id()));
    if let Err(e) = build_venv(&building) {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first, or a stale venv (other pins) is in the way.
        if is_ready(&venv) {
            let _ = std::fs::remove_dir_all(&building);
            return Ok(venv_python(&venv));
        }
        let _ = std::fs::remove_dir_all(&venv);
        if let Err(e) = std::fs::rename(&building, &venv) {
            let _ = std::fs::remove_dir_all(&building);
            if !is_ready(&venv) {
                return Err(format!(
                    "cannot move the new venv to {}: {e}",
                    venv.display()
                ));
            }
        }
    }
    if is_ready(&venv) {
        Ok(venv_python(&venv))
    } else {
        Err(format!("{} is not usable after installing", venv.display()))
    }
}

/// Every signature this crate makes, as cases for the Python verifiers: each
/// scheme accepted with the right secret, and refused for a tampered body, a
/// wrong secret or (where signed) a stale timestamp.
fn cases() -> Vec<Value> {
    let current = parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("valid secret");
    let previous = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
    let stranger = format_secret(b"a secret the sender never used");
    let secrets = [
        SigningKey::Symmetric(current.clone()),
        SigningKey::Symmetric(previous.clone()),
    ];
    let now = unix_now();
    let stale = now - 3600;
    let msg_id = "msg_2f1XNkQ6q2lCtCwtp1zNaQb8cP3";
    // Non-ASCII on purpose: every verifier must sign the same UTF-8 bytes.
    let body = r#"{"type":"invoice.paid","data":{"customer":"Zoë Ångström","note":"🦀 ✓"}}"#;
    let tampered = body.replace("paid", "void");
    let custom = [
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha256, Encoding::Hex),
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha384, Encoding::Base64),
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha512, Encoding::Hex),
    ]
    .map(|scheme| scheme.expect("valid header"));

    let mut schemes = vec![
        (SignatureScheme::Standard, vec!["standardwebhooks", "svix"]),
        (SignatureScheme::Stripe, vec!["stripe"]),
        (SignatureScheme::Github, vec!["github"]),
        (SignatureScheme::Shopify, vec!["shopify"]),
        (SignatureScheme::Slack, vec!["slack"]),
    ];
    schemes.extend(
        custom
            .into_iter()
            .map(|c| (SignatureScheme::Hmac(c), vec!["hmac"])),
    );

    let mut cases = Vec::new();
    for (scheme, verifiers) in &schemes {
        let sign = |timestamp: i64| -> Value {
            let headers = scheme
                .headers(&secrets, msg_id, timestamp, body.as_bytes())
                .expect("secrets given");
            headers
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let fresh = sign(now);
        // Secrets that verify: every secret for the rotating schemes, the current one otherwise.
        let rotates = matches!(scheme, SignatureScheme::Standard | SignatureScheme::Stripe);
        let mut accepted = vec![("current secret", format_secret(&current))];
        if rotates {
            accepted.push(("previous secret", format_secret(&previous)));
        }
        let timestamped = !matches!(
            scheme,
            SignatureScheme::Github | SignatureScheme::Shopify | SignatureScheme::Hmac(_)
        );
        let hmac = match scheme {
            SignatureScheme::Hmac(c) => serde_json::to_value(c).expect("serialises"),
            _ => Value::Null,
        };
        for verifier in verifiers {
            let label = match scheme {
                SignatureScheme::Hmac(_) => format!("{verifier} {}", hmac),
                _ => verifier.to_string(),
            };
            let mut case = |what: &str, secret: &str, headers: &Value, body: &str, expect: &str| {
                cases.push(json!({
                    "name": format!("{label}: {what}"),
                    "verifier": verifier,
                    "secret": secret,
                    "headers": headers,
                    "body": body,
                    "hmac": hmac,
                    "expect": expect,
                }));
            };
            for (which, secret) in &accepted {
                case(which, secret, &fresh, body, "accept");
            }
            let current_text = format_secret(&current);
            case("tampered body", &current_text, &fresh, &tampered, "reject");
            case("unknown secret", &stranger, &fresh, body, "reject");
            if !rotates {
                case(
                    "previous secret",
                    &format_secret(&previous),
                    &fresh,
                    body,
                    "reject",
                );
            }
            if timestamped {
                case(
                    "stale timestamp",
                    &current_text,
                    &sign(stale),
                    body,
                    "reject",
                );
            }
        }
    }
    cases
}

#[test]
fn provider_libraries_accept_herald_signatures_and_refuse_tampered_ones() {
    let python = match provider_python() {
        Ok(python) => python,
        Err(why) => return skip_or_fail(&why),
    };
    let cases = cases();
    let dir = std::env::temp_dir().join(format!("herald-signature-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let cases_path = dir.join("cases.json");
    std::fs::write(
        &cases_path,
        serde_json::to_vec_pretty(&cases).expect("json"),
    )
    .expect("write the cases");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("verify_with_providers.py");
    let output = run(
        Command::new(&python).arg(&script).arg(&cases_path),
        SCRIPT_TIMEOUT,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the provider verifiers disagree with herald-signature ({} cases): {}",
        cases.len(),
        describe(&output)
    );
}
