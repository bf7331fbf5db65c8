//! Verifies one delivery of any scheme, read from standard input.
//!
//! ```text
//! verify_any_scheme SCHEME KEY [--tolerance SECONDS] [--now UNIX_SECONDS]
//!                   [--hmac-header NAME] [--hmac-algorithm sha256|sha384|sha512]
//!                   [--hmac-encoding hex|base64]  < delivery.txt
//! ```
//!
//! SCHEME is `standard`, `ed25519`, `stripe`, `github`, `shopify`, `slack` or
//! `hmac`; KEY is the endpoint's `whsec_…` secret or, for `ed25519`, its `whpk_…`
//! public key. The delivery is `name: value` header lines, a blank line, then
//! the raw body, byte for byte (mind the newline an editor or `echo` adds):
//!
//! ```text
//! printf 'x-hub-signature-256: sha256=…\n\n{"a":1}' | cargo run -p herald-signature \
//!     --example verify_any_scheme -- github whsec_…
//! ```
//!
//! With no arguments it runs its built-in sample: signs one delivery with every
//! scheme, writes each as that text, and verifies it back. Prints `verified` or
//! `NOT VERIFIED: <reason>`; exits 0 when everything verified, 1 when not, 2 on
//! a usage error.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use herald_signature::ed25519::SecretKey;
use herald_signature::{
    unix_now, Algorithm, Encoding, HmacScheme, SignatureError, SignatureScheme, SigningKey,
    VerifyingKey,
};

const USAGE: &str = "usage: verify_any_scheme SCHEME KEY [--tolerance SECONDS] [--now UNIX_SECONDS] \
[--hmac-header NAME] [--hmac-algorithm sha256|sha384|sha512] [--hmac-encoding hex|base64] < delivery";

/// What the command line asked for.
struct Request {
    scheme: SignatureScheme,
    key: VerifyingKey,
    tolerance: Duration,
    now: i64,
}

/// A delivery as it came over the wire: header names in lowercase, the body raw.
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    /// Reads `name: value` lines up to the first blank line, then the body.
    fn parse(input: &[u8]) -> Result<Self, String> {
        let (head, body) = split_at_blank_line(input).ok_or("no blank line after the headers")?;
        let head = std::str::from_utf8(head).map_err(|_| "headers are not UTF-8")?;
        let headers = head
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("header line without ':': {line:?}"))?;
                Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            headers,
            body: body.to_vec(),
        })
    }

    /// The text form [`Delivery::parse`] reads.
    fn render(headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
        let mut text = Vec::new();
        for (name, value) in headers {
            text.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        text.push(b'\n');
        text.extend_from_slice(body);
        text
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }

    fn verify(&self, request: &Request) -> Result<(), SignatureError> {
        request.scheme.verify_at(
            &request.key,
            |name| self.header(name),
            &self.body,
            request.tolerance,
            request.now,
        )
    }
}

/// Splits at the first empty line, `\n\n` or `\r\n\r\n`.
fn split_at_blank_line(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let find = |separator: &[u8]| {
        input
            .windows(separator.len())
            .position(|window| window == separator)
            .map(|at| (&input[..at], &input[at + separator.len()..]))
    };
    match (find(b"\r\n\r\n"), find(b"\n\n")) {
        (Some(crlf), Some(lf)) if crlf.0.len() < lf.0.len() => Some(crlf),
        (_, Some(lf)) => Some(lf),
        (crlf, None) => crlf,
    }
}

fn parse_scheme(name: &str, options: &HmacOptions) -> Result<SignatureScheme, String> {
    Ok(match name {
        "standard" => SignatureScheme::Standard,
        "ed25519" => SignatureScheme::Ed25519,
        "stripe" => SignatureScheme::Stripe,
        "github" => SignatureScheme::Github,
        "shopify" => SignatureScheme::Shopify,
        "slack" => SignatureScheme::Slack,
        "hmac" => {
            let algorithm = match options.algorithm.as_str() {
                "sha256" => Algorithm::Sha256,
                "sha384" => Algorithm::Sha384,
                "sha512" => Algorithm::Sha512,
                "sha1" => Algorithm::Sha1,
                other => return Err(format!("unknown HMAC algorithm {other:?}")),
            };
            let encoding = match options.encoding.as_str() {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                other => return Err(format!("unknown HMAC encoding {other:?}")),
            };
            let scheme = HmacScheme::new(options.header.as_str(), algorithm, encoding)
                .map_err(|e| e.to_string())?;
            SignatureScheme::Hmac(scheme)
        }
        other => return Err(format!("unknown scheme {other:?}")),
    })
}

/// The `hmac` scheme's settings, defaulting as Herald's API does.
struct HmacOptions {
    header: String,
    algorithm: String,
    encoding: String,
}

fn parse_args(args: &[String]) -> Result<Request, String> {
    let [scheme, key, flags @ ..] = args else {
        return Err("SCHEME and KEY are required".to_owned());
    };
    let mut options = HmacOptions {
        header: "X-Signature".to_owned(),
        algorithm: "sha256".to_owned(),
        encoding: "hex".to_owned(),
    };
    let mut tolerance = Duration::from_secs(300);
    let mut now = unix_now();
    for pair in flags.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value", pair[0]));
        };
        let not_a_number = |_| format!("{flag} needs a whole number of seconds");
        match flag.as_str() {
            "--tolerance" => tolerance = Duration::from_secs(value.parse().map_err(not_a_number)?),
            "--now" => now = value.parse().map_err(not_a_number)?,
            "--hmac-header" => options.header = value.clone(),
            "--hmac-algorithm" => options.algorithm = value.clone(),
            "--hmac-encoding" => options.encoding = value.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Request {
        scheme: parse_scheme(scheme, &options)?,
        key: VerifyingKey::parse(key).map_err(|e| format!("KEY: {e}"))?,
        tolerance,
        now,
    })
}

fn report(label: &str, outcome: &Result<(), SignatureError>) {
    match outcome {
        Ok(()) => println!("{label}: verified"),
        Err(why) => println!("{label}: NOT VERIFIED: {why}"),
    }
}

/// Signs a sample with every scheme and verifies each through the text form.
fn run_sample() -> ExitCode {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ed25519_secret = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    let body = br#"{"type":"invoice.paid","data":{"invoice":42}}"#;
    let mut all_verified = true;
    for name in [
        "standard", "ed25519", "stripe", "github", "shopify", "slack", "hmac",
    ] {
        let options = HmacOptions {
            header: "X-Signature".to_owned(),
            algorithm: "sha512".to_owned(),
            encoding: "base64".to_owned(),
        };
        let scheme = parse_scheme(name, &options).expect("a known scheme");
        let key_text = if scheme.is_asymmetric() {
            ed25519_secret
        } else {
            secret
        };
        let key = SigningKey::parse(key_text).expect("a valid sample key");
        let headers = scheme
            .headers(std::slice::from_ref(&key), "msg_sample", unix_now(), body)
            .expect("the key suits the scheme");
        let text = Delivery::render(&headers, body);
        let delivery = Delivery::parse(&text).expect("what render writes, parse reads");
        // The receiver's side: only the verifying half (`whsec_…` or `whpk_…`).
        let request = Request {
            scheme,
            key: VerifyingKey::parse(&key.verifying_key().to_text()).expect("valid"),
            tolerance: Duration::from_secs(300),
            now: unix_now(),
        };
        let outcome = delivery.verify(&request);
        all_verified &= outcome.is_ok();
        report(name, &outcome);
    }
    // And a tampered one, to show a refusal.
    let key = SecretKey::parse(ed25519_secret)
        .expect("valid")
        .public_key();
    let request = Request {
        scheme: SignatureScheme::Ed25519,
        key: VerifyingKey::Asymmetric(key),
        tolerance: Duration::from_secs(300),
        now: unix_now(),
    };
    let forged = Delivery {
        headers: vec![
            ("webhook-id".to_owned(), "msg_sample".to_owned()),
            ("webhook-timestamp".to_owned(), unix_now().to_string()),
            ("webhook-signature".to_owned(), "v1a,Zm9yZ2Vk".to_owned()),
        ],
        body: body.to_vec(),
    };
    report(
        "ed25519, forged (expected to fail)",
        &forged.verify(&request),
    );
    if all_verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return run_sample();
    }
    let request = match parse_args(&args) {
        Ok(request) => request,
        Err(why) => {
            eprintln!("error: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut input = Vec::new();
    if let Err(why) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error: cannot read standard input: {why}");
        return ExitCode::from(2);
    }
    let delivery = match Delivery::parse(&input) {
        Ok(delivery) => delivery,
        Err(why) => {
            eprintln!("error: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = delivery.verify(&request);
    report(request.scheme.name(), &outcome);
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
