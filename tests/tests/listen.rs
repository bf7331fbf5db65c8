//! `herald listen` end to end: the real binary, started as a developer would,
//! receives deliveries from a real embedded Herald server (API and worker),
//! verifies them with the key Herald's API shows, fails the first one on
//! purpose so Herald retries, prints every delivery and lists it at `GET /`;
//! a tampered copy sent straight to it fails verification. Flags that cannot
//! work are refused before it listens, and `--help` describes every flag.
//!
//! Needs nothing but the binary: these tests never skip.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use herald_e2e::{herald_bin, Backend, Herald, Options};
use reqwest::Method;
use serde_json::{json, Value};

/// How long a test waits for deliveries to show.
const WAIT: Duration = Duration::from_secs(30);

/// The payload posted, byte for byte what the listener receives.
const PAYLOAD: &str = r#"{"invoice": 42,  "amount": 1200, "items": ["a", "b"]}"#;

/// A running `herald listen`; killed when dropped.
struct Listener {
    child: Child,
    url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Listener {
    /// Starts `herald listen --addr 127.0.0.1:0 FLAGS` and reads its address
    /// from the first line it prints.
    fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(herald_bin())
            .args(["listen", "--addr", "127.0.0.1:0"])
            .args(flags)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald listen");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let first_line = collect_lines(child.stdout.take().expect("piped stdout"), &stdout);
        collect_lines(child.stderr.take().expect("piped stderr"), &stderr);
        let url = match first_line.recv_timeout(WAIT) {
            Ok(line) => line
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("first line names the address: {line:?}"))
                .to_owned(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herald listen printed no address; stderr:\n{}",
                    text(&stderr)
                );
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self {
            child,
            url,
            stdout,
            stderr,
            http,
        }
    }

    /// Everything printed on stdout so far.
    fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// The printed block of each delivery whose message id is `msg_id`.
    fn printed_for(&self, msg_id: &str) -> Vec<String> {
        let needle = format!("\nmessage id  {msg_id}\n");
        self.stdout()
            .split(&"-".repeat(72))
            .filter(|block| block.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// `GET /`: the deliveries it keeps, oldest first.
    async fn deliveries(&self) -> Vec<Value> {
        let listing: Value = self
            .http
            .get(format!("{}/", self.url))
            .send()
            .await
            .expect("GET / reaches the listener")
            .json()
            .await
            .expect("GET / answers JSON");
        listing["deliveries"]
            .as_array()
            .expect("a deliveries array")
            .clone()
    }

    /// Polls `GET /` (at most [`WAIT`]) until `done` holds for the deliveries
    /// of `msg_id`; those deliveries.
    async fn wait_for(&self, msg_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let deliveries: Vec<Value> = self
                .deliveries()
                .await
                .into_iter()
                .filter(|d| d["msgId"] == msg_id)
                .collect();
            if done(&deliveries) || Instant::now() > deadline {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit.
    async fn terminate(&mut self) -> Option<ExitStatus> {
        herald_e2e::sigterm(self.child.id());
        let child = &mut self.child;
        herald_e2e::wait_for_exit(|| child.try_wait().ok().flatten(), Duration::from_secs(10)).await
    }

    /// Both outputs, for assertion messages.
    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            text(&self.stderr)
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends every line of `pipe` to `buffer` on a thread of its own (so the
/// process never blocks on a full pipe); the first line also goes to the
/// receiver returned.
fn collect_lines(
    pipe: impl Read + Send + 'static,
    buffer: &Arc<Mutex<String>>,
) -> mpsc::Receiver<String> {
    let (first, first_line) = mpsc::channel();
    let buffer = buffer.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = first.send(line.clone());
            let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.push_str(&line);
            buffer.push('\n');
        }
    });
    first_line
}

fn text(buffer: &Mutex<String>) -> String {
    buffer.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// An embedded server with the worker role: loopback allowed, retries every second.
async fn start_herald() -> Herald {
    let options = Options {
        worker: true,
        ..Options::default()
    };
    Backend::Embedded
        .scope(Herald::start_with(options))
        .await
        .expect("the embedded backend needs no services")
}

/// Posts [`PAYLOAD`] as an `invoice.paid` message to application `app`; its id.
async fn post_message(herald: &Herald, app: &str) -> String {
    let body = format!(r#"{{"eventType": "invoice.paid", "payload": {PAYLOAD}}}"#);
    let created = herald
        .request_raw(
            Method::POST,
            &format!("/api/v1/app/{app}/msg"),
            Some(&herald.tenant.key),
            "application/json",
            body.into_bytes(),
        )
        .await;
    assert_eq!(created.status, 202, "{created:?}");
    created.body["id"].as_str().expect("message id").to_owned()
}

/// The key Herald's API shows for an endpoint.
async fn endpoint_key(herald: &Herald, app: &str, endpoint: &str) -> String {
    let reply = herald
        .get(&format!("/api/v1/app/{app}/endpoint/{endpoint}/secret"))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["key"].as_str().expect("key").to_owned()
}

/// Checks that `msg_id` was delivered twice, failed then answered `status`,
/// both verified, in the listing and on stdout.
async fn assert_retried_and_verified(
    listener: &Listener,
    herald: &Herald,
    msg_id: &str,
    status: u16,
) -> Vec<Value> {
    let both_in = |d: &[Value]| d.len() >= 2;
    let deliveries = listener.wait_for(msg_id, both_in).await;
    assert_eq!(
        deliveries.len(),
        2,
        "{deliveries:#?}\n{}\nserver log:\n{}",
        listener.output(),
        herald.log()
    );
    let statuses: Vec<&Value> = deliveries.iter().map(|d| &d["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(status)], "{deliveries:#?}");
    for delivery in &deliveries {
        assert_eq!(delivery["verified"], true, "{delivery:#}");
        assert_eq!(delivery["error"], Value::Null, "{delivery:#}");
        assert_eq!(delivery["eventType"], "invoice.paid");
        assert_eq!(delivery["method"], "POST");
        assert_eq!(delivery["path"], "/hooks");
        assert_eq!(delivery["body"]["amount"], 1200);
    }
    let printed = listener.printed_for(msg_id);
    assert_eq!(printed.len(), 2, "{}", listener.output());
    assert!(
        printed[0].contains("\nsignature   verified\n"),
        "{}",
        printed[0]
    );
    assert!(
        printed[0].contains("\nanswered    500 Internal Server Error\n"),
        "{}",
        printed[0]
    );
    assert!(
        printed[1].contains("\nsignature   verified\n"),
        "{}",
        printed[1]
    );
    assert!(
        printed[1].contains("\n  \"amount\": 1200,\n"),
        "{}",
        printed[1]
    );
    deliveries
}

/// Sends `recorded`'s headers with [`PAYLOAD`] changed by one byte straight to
/// the listener; checks it is listed and printed as not verified.
async fn assert_tampered_copy_is_refused(listener: &Listener, recorded: &Value, msg_id: &str) {
    let tampered = PAYLOAD.replacen("1200", "1201", 1);
    assert_eq!(tampered.len(), PAYLOAD.len());
    let mut request = listener
        .http
        .post(format!("{}/hooks", listener.url))
        .body(tampered);
    let headers = recorded["headers"].as_object().expect("headers");
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value.as_str().expect("text header"));
        }
    }
    let answer = request.send().await.expect("the listener answers");
    assert!(answer.status().is_success(), "{answer:?}");
    let deliveries = listener.wait_for(msg_id, |d| d.len() >= 3).await;
    assert_eq!(deliveries.len(), 3, "{}", listener.output());
    let copy = &deliveries[2];
    assert_eq!(copy["verified"], false, "{copy:#}");
    assert_eq!(copy["error"], "no matching signature", "{copy:#}");
    assert_eq!(copy["body"]["amount"], 1201);
    let printed = listener.printed_for(msg_id);
    assert_eq!(printed.len(), 3, "{}", listener.output());
    assert!(
        printed[2].contains("\nsignature   NOT VERIFIED: no matching signature\n"),
        "{}",
        printed[2]
    );
}

#[tokio::test]
async fn listen_verifies_herald_deliveries_and_sees_the_retry_after_a_failure() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut listener = Listener::start(&["--secret", secret, "--fail-first", "1"]);
    let herald = start_herald().await;
    let app = herald
        .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    let endpoint =
        json!({"url": format!("{}/hooks", listener.url), "uid": "local", "secret": secret});
    let created = herald.post("/api/v1/app/a/endpoint", endpoint).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(endpoint_key(&herald, "a", "local").await, secret);

    let msg_id = post_message(&herald, "a").await;
    let deliveries = assert_retried_and_verified(&listener, &herald, &msg_id, 204).await;
    assert_eq!(deliveries[1]["headers"]["webhook-id"], msg_id.as_str());
    assert_tampered_copy_is_refused(&listener, &deliveries[1], &msg_id).await;

    let status = listener.terminate().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops it with 0: {status:?}\n{}",
        listener.output()
    );
}

#[tokio::test]
async fn listen_verifies_ed25519_deliveries_with_the_public_key() {
    let herald = start_herald().await;
    let app = herald
        .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    // The key pair is Herald's: the endpoint exists before the listener can
    // be given its public key, and points at it once it listens.
    let endpoint =
        json!({"url": "http://127.0.0.1:9/unused", "uid": "local", "signatureScheme": "ed25519"});
    let created = herald.post("/api/v1/app/a/endpoint", endpoint).await;
    assert_eq!(created.status, 201, "{created:?}");
    let key = endpoint_key(&herald, "a", "local").await;
    assert!(
        key.starts_with("whpk_"),
        "an ed25519 endpoint shows its public key: {key}"
    );
    let listener = Listener::start(&[
        "--scheme",
        "ed25519",
        "--secret",
        &key,
        "--fail-first",
        "1",
        "--status",
        "200",
    ]);
    let url = json!({"url": format!("{}/hooks", listener.url)});
    let patched = herald.patch("/api/v1/app/a/endpoint/local", url).await;
    assert_eq!(patched.status, 200, "{patched:?}");

    let msg_id = post_message(&herald, "a").await;
    let deliveries = assert_retried_and_verified(&listener, &herald, &msg_id, 200).await;
    let signature = deliveries[1]["headers"]["webhook-signature"]
        .as_str()
        .unwrap_or_default();
    assert!(signature.starts_with("v1a,"), "{signature}");
    assert_tampered_copy_is_refused(&listener, &deliveries[1], &msg_id).await;
}

#[tokio::test]
async fn listen_verifies_every_scheme_it_is_told_to() {
    use herald_signature::{Algorithm, Encoding, HmacScheme, SignatureScheme, SigningKey};

    let secret = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("whsec_");
    let pair = SigningKey::Asymmetric(herald_signature::ed25519::SecretKey::generate());
    let public = pair.verifying_key().to_text();
    let custom = HmacScheme::new("X-Signature", Algorithm::Sha512, Encoding::Base64).expect("hmac");
    let cases: Vec<(SignatureScheme, &SigningKey, Vec<&str>)> = vec![
        (
            SignatureScheme::Ed25519,
            &pair,
            vec!["--scheme", "ed25519", "--secret", &public],
        ),
        (SignatureScheme::Standard, &pair, vec!["--secret", &public]),
        (SignatureScheme::Github, &secret, vec!["--scheme", "github"]),
        (SignatureScheme::Slack, &secret, vec!["--scheme", "slack"]),
        (
            SignatureScheme::Hmac(custom),
            &secret,
            vec![
                "--scheme",
                "hmac",
                "--hmac-header",
                "X-Signature",
                "--hmac-algorithm",
                "sha512",
                "--hmac-encoding",
                "base64",
            ],
        ),
    ];
    let secret_text = secret.to_text();
    for (scheme, key, mut flags) in cases {
        if !flags.contains(&"--secret") {
            flags.extend(["--secret", &secret_text]);
        }
        let listener = Listener::start(&flags);
        let msg_id = format!("msg_{}", scheme.name());
        let timestamp = herald_signature::unix_now();
        let headers = scheme
            .headers(
                std::slice::from_ref(key),
                &msg_id,
                timestamp,
                PAYLOAD.as_bytes(),
            )
            .expect("sign");
        for body in [PAYLOAD.to_owned(), PAYLOAD.replacen("42", "43", 1)] {
            let mut request = listener
                .http
                .post(format!("{}/hooks", listener.url))
                .body(body);
            // The provider schemes sign without it; the listing keys on it.
            if !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("webhook-id"))
            {
                request = request.header("webhook-id", &msg_id);
            }
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            request.send().await.expect("the listener answers");
        }
        let deliveries = listener.wait_for(&msg_id, |d| d.len() >= 2).await;
        assert_eq!(deliveries.len(), 2, "{flags:?}\n{}", listener.output());
        assert_eq!(
            deliveries[0]["verified"], true,
            "{flags:?}: {:#}",
            deliveries[0]
        );
        assert_eq!(
            deliveries[1]["verified"], false,
            "{flags:?}: {:#}",
            deliveries[1]
        );
        assert_eq!(deliveries[1]["error"], "no matching signature", "{flags:?}");
    }
}

#[tokio::test]
async fn listen_without_a_secret_prints_deliveries_as_not_verified() {
    let listener = Listener::start(&["--status", "202"]);
    let answer = listener
        .http
        .post(format!("{}/any/path?x=1", listener.url))
        .header("webhook-id", "msg_unsigned")
        .body("not json")
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(answer.status(), 202);
    let deliveries = listener.wait_for("msg_unsigned", |d| !d.is_empty()).await;
    assert_eq!(deliveries.len(), 1, "{}", listener.output());
    assert_eq!(deliveries[0]["verified"], false);
    assert_eq!(deliveries[0]["error"], "no secret given");
    assert_eq!(deliveries[0]["path"], "/any/path?x=1");
    assert_eq!(deliveries[0]["body"], "not json");
    let printed = listener.printed_for("msg_unsigned");
    assert_eq!(printed.len(), 1, "{}", listener.output());
    assert!(
        printed[0].contains("\nsignature   not verified (no secret given)\n"),
        "{}",
        printed[0]
    );
    assert!(printed[0].contains("\nnot json\n"), "{}", printed[0]);
}

#[tokio::test]
async fn listen_refuses_flags_that_cannot_work_before_listening() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let cases: &[(&[&str], &str)] = &[
        (
            &["--scheme", "ed25519", "--secret", secret],
            "whpk_ public key",
        ),
        (&["--secret", "whsec_!!!"], "invalid --secret"),
        (&["--status", "700"], "700"),
        (&["--fail-status", "99"], "99"),
        (&["--scheme", "hmac", "--secret", secret], "--hmac-header"),
    ];
    for (flags, expected) in cases {
        let mut child = Command::new(herald_bin())
            .args(["listen", "--addr", "127.0.0.1:0"])
            .args(*flags)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald listen");
        let exited =
            herald_e2e::wait_for_exit(|| child.try_wait().ok().flatten(), Duration::from_secs(10))
                .await;
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{flags:?} must be refused, but herald listen kept running");
        }
        let output = child.wait_with_output().expect("herald listen's output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} must be refused");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{flags:?} listened: {:?}",
            output.stdout
        );
    }
}

#[test]
fn listen_help_describes_every_flag() {
    let output = Command::new(herald_bin())
        .args(["listen", "--help"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run herald listen --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = help.lines().collect();
    let flags = [
        "--addr",
        "--secret",
        "--scheme",
        "--hmac-header",
        "--hmac-algorithm",
        "--hmac-encoding",
        "--tolerance",
        "--status",
        "--fail-status",
        "--fail-first",
        "--keep",
    ];
    for flag in flags {
        let at = lines
            .iter()
            .position(|line| line.trim_start().starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("{flag} is missing from the help:\n{help}"));
        let description = lines.get(at + 1).map_or("", |line| line.trim());
        assert!(
            !description.is_empty(),
            "{flag} has no description:\n{help}"
        );
    }
}
