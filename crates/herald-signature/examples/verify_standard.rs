//! Verifies a captured Standard Webhooks delivery (`webhook-*` or `svix-*`
//! headers), as a receiver's handler would, and prints the outcome.
//!
//! ```text
//! cargo run -p herald-signature --example verify_standard                  # built-in sample
//! cargo run -p herald-signature --example verify_standard -- capture.json  # your own
//! ```
//!
//! A capture is a JSON object: `{"key": "whsec_…" or "whpk_…", "headers":
//! {"webhook-id": "…", "webhook-timestamp": "…", "webhook-signature": "…"},
//! "body": "<the raw body, as text>"}`. A capture is older than any sensible
//! tolerance, so its signature is checked as of its own timestamp, and the
//! check against the clock a live receiver makes is printed beside it.
//!
//! Exits 0 when the signature is valid, 1 when it is not, 2 when the capture
//! cannot be read.

use std::process::ExitCode;

use herald_signature::standard::{self, WebhookHeaders, DEFAULT_TOLERANCE};
use herald_signature::{unix_now, SignatureError, VerifyingKey};

/// One delivery as a receiver saw it.
struct Capture {
    key: String,
    /// Header names in lowercase, as HTTP header maps look them up.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Capture {
    /// The first Standard Webhooks test vector.
    fn sample() -> Self {
        let headers = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        Self {
            key: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: br#"{"test": 2432232314}"#.to_vec(),
        }
    }

    fn read(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
        let field = |name: &str| {
            json.get(name)
                .ok_or_else(|| format!("{path} has no \"{name}\""))
        };
        let text_of = |value: &serde_json::Value, what: &str| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{what} must be a string"))
        };
        let headers = field("headers")?
            .as_object()
            .ok_or("\"headers\" must be an object")?
            .iter()
            .map(|(name, value)| Ok((name.to_ascii_lowercase(), text_of(value, name)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            key: text_of(field("key")?, "\"key\"")?,
            headers,
            body: text_of(field("body")?, "\"body\"")?.into_bytes(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What a receiver's handler does before it parses the body: read the three
/// headers, then verify the raw bytes as of `now`.
fn verify(capture: &Capture, key: &VerifyingKey, now: i64) -> Result<(), SignatureError> {
    let headers = WebhookHeaders::from_lookup(|name| capture.header(name))?;
    standard::verify_key_at(key, &headers, &capture.body, DEFAULT_TOLERANCE, now)
}

fn main() -> ExitCode {
    let capture = match std::env::args().nth(1) {
        None => Capture::sample(),
        Some(path) => match Capture::read(&path) {
            Ok(capture) => capture,
            Err(why) => {
                eprintln!("error: {why}");
                return ExitCode::from(2);
            }
        },
    };
    // A receiver holds `whsec_…` (HMAC, `v1`) or `whpk_…` (Ed25519, `v1a`).
    let key = match VerifyingKey::parse(&capture.key) {
        Ok(key) => key,
        Err(why) => {
            eprintln!("error: key: {why}");
            return ExitCode::from(2);
        }
    };
    let id = capture.header("webhook-id").or(capture.header("svix-id"));
    println!("delivery {}", id.unwrap_or("(no id)"));

    let signed_at = capture
        .header("webhook-timestamp")
        .or(capture.header("svix-timestamp"))
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or_else(unix_now);
    let outcome = verify(&capture, &key, signed_at);
    match &outcome {
        Ok(()) => println!("signature as of its timestamp: verified"),
        Err(why) => println!("signature as of its timestamp: NOT VERIFIED: {why}"),
    }
    match verify(&capture, &key, unix_now()) {
        Ok(()) => println!("against the clock now:         verified"),
        Err(why) => println!("against the clock now:         NOT VERIFIED: {why}"),
    }
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
