//! The other direction, for the tests of Herald's inbound webhooks
//! (`/ingest`): requests signed as the providers sign them, by their own
//! code where they publish a signer — `signers.py` (Stripe's
//! `WebhookSignature.generate_signature_header`, `slack_sdk`'s
//! `SignatureVerifier.generate_signature`, `standardwebhooks`'
//! `Webhook.sign`; Shopify's and a custom header's documented recipes) and
//! `signers.mjs` (`@octokit/webhooks-methods`' `sign`), installed like the
//! verifiers.

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::process::describe;
use crate::{node, python};

/// The files of the signers' npm install.
const NODE_FILES: [&str; 3] = ["package.json", "package-lock.json", "signers.mjs"];

/// The settings of a custom HMAC header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HmacSigning {
    pub header: String,
    /// `sha256`, `sha384`, `sha512` or `sha1`.
    pub algorithm: String,
    /// `hex` or `base64`.
    pub encoding: String,
    /// Written before the tag, e.g. `sha256=`.
    pub prefix: Option<String>,
}

/// Whose signature a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    Stripe,
    Github,
    Shopify,
    Slack,
    /// Standard Webhooks, with the message id it signs.
    Standard {
        msg_id: String,
    },
    Hmac(HmacSigning),
}

impl Signer {
    fn name(&self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Standard { .. } => "standard",
            Self::Hmac(_) => "hmac",
        }
    }
}

/// One request to sign.
#[derive(Clone, Debug)]
pub struct SignRequest {
    pub signer: Signer,
    /// The secret as the provider shows it.
    pub secret: String,
    pub body: Vec<u8>,
    /// Unix seconds the timestamped schemes sign (Stripe, Slack, Standard).
    pub timestamp: i64,
}

/// The headers that sign each request, in order. Fails (with the reason)
/// when Python, Node or their pinned packages are unusable; the caller then
/// skips or fails with [`crate::skip_or_fail`].
///
/// # Panics
///
/// When a signer script crashes or answers for other requests than it was
/// given: a bug, not a missing tool.
pub fn sign(requests: &[SignRequest]) -> Result<Vec<Vec<(String, String)>>, String> {
    let (on_node, on_python): (Vec<_>, Vec<_>) = requests
        .iter()
        .enumerate()
        .partition(|(_, r)| r.signer == Signer::Github);
    let mut signed: Vec<Option<Vec<(String, String)>>> = requests.iter().map(|_| None).collect();
    if !on_python.is_empty() {
        let python = python::python_with(python::PROVIDERS)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("signers.py");
        run_signers(Command::new(python).arg(script), &on_python, &mut signed);
    }
    if !on_node.is_empty() {
        let project = node::install(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            &NODE_FILES,
            "npm-signers",
        )?;
        run_signers(
            Command::new("node").arg(project.join("signers.mjs")),
            &on_node,
            &mut signed,
        );
    }
    Ok(signed
        .into_iter()
        .map(|s| s.expect("every request is signed"))
        .collect())
}

fn run_signers(
    script: &mut Command,
    batch: &[(usize, &SignRequest)],
    signed: &mut [Option<Vec<(String, String)>>],
) {
    let input: Vec<Value> = batch
        .iter()
        .map(|(_, request)| {
            json!({
                "provider": request.signer.name(),
                "secret": request.secret,
                "body": STANDARD.encode(&request.body),
                "timestamp": request.timestamp,
                "msg_id": match &request.signer {
                    Signer::Standard { msg_id } => json!(msg_id),
                    _ => Value::Null,
                },
                "hmac": match &request.signer {
                    Signer::Hmac(options) => json!(options),
                    _ => Value::Null,
                },
            })
        })
        .collect();
    let (answered, output): (Vec<Vec<(String, String)>>, _) =
        crate::run_json_script(script, "herald-signer-requests", &input);
    assert_eq!(
        answered.len(),
        batch.len(),
        "{script:?} signed other requests than it was given: {}",
        describe(&output)
    );
    for ((index, _), headers) in batch.iter().zip(answered) {
        signed[*index] = Some(headers);
    }
}
