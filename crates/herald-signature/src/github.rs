//! GitHub-style signatures, as [GitHub documents them](https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, body)>`.
//!
//! The header holds one signature, so during a secret rotation only the current
//! secret signs; nothing timestamps the body, so receivers that need replay
//! protection deduplicate on the delivery's message id.

use crate::mac::{decode_lower_hex, Keyed};
use crate::SignatureError;

/// The header GitHub's verifiers read.
pub const HEADER: &str = "X-Hub-Signature-256";

const PREFIX: &str = "sha256=";

/// The `X-Hub-Signature-256` value of a body under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(Keyed::sha256(key, &[body]).tag()))
}

/// Verifies an `X-Hub-Signature-256` value, comparing in constant time.
pub fn verify(key: &[u8], header: &str, body: &[u8]) -> Result<(), SignatureError> {
    let candidate = header
        .trim()
        .strip_prefix(PREFIX)
        .and_then(decode_lower_hex)
        .ok_or_else(|| SignatureError::MalformedHeader(HEADER.to_owned()))?;
    if Keyed::sha256(key, &[body]).matches(&candidate) {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_what_github_documents() {
        // GitHub's own example: secret "It's a Secret to Everybody", payload "Hello, World!".
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let value = sign(b"whsec_key", b"{}");
        assert_eq!(verify(b"whsec_key", &value, b"{}"), Ok(()));
        assert_eq!(
            verify(b"whsec_key", &value, b"{ }"),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify(b"whsec_other", &value, b"{}"),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify(b"whsec_key", value.trim_start_matches("sha256="), b"{}"),
            Err(SignatureError::MalformedHeader(HEADER.into()))
        );
    }
}
