//! Shopify-style signatures, as [Shopify documents them](https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook-to-ensure-its-coming-from-shopify):
//! `X-Shopify-Hmac-SHA256: <base64 HMAC-SHA256(key, body)>`.
//!
//! One signature per header, so only the current secret signs during a rotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::mac::Keyed;
use crate::SignatureError;

/// The header Shopify's verifiers read.
pub const HEADER: &str = "X-Shopify-Hmac-SHA256";

/// The `X-Shopify-Hmac-SHA256` value of a body under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    STANDARD.encode(Keyed::sha256(key, &[body]).tag())
}

/// Verifies an `X-Shopify-Hmac-SHA256` value, comparing in constant time.
pub fn verify(key: &[u8], header: &str, body: &[u8]) -> Result<(), SignatureError> {
    let candidate = STANDARD
        .decode(header.trim())
        .map_err(|_| SignatureError::MalformedHeader(HEADER.to_owned()))?;
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
    fn signs_base64_of_the_body_hmac() {
        // Computed independently with Python's hmac and base64 modules.
        assert_eq!(
            sign(b"whsec_test", b"{}"),
            "Rr3Coug5ZL0mlazGoflxYti6/BNaBxqlzVyZquVIFEA="
        );
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let value = sign(b"whsec_key", b"{}");
        assert_eq!(verify(b"whsec_key", &value, b"{}"), Ok(()));
        assert_eq!(
            verify(b"whsec_key", &value, b"[]"),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify(b"whsec_key", "%%%", b"{}"),
            Err(SignatureError::MalformedHeader(HEADER.into()))
        );
    }
}
