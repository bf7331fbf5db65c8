//! Endpoint secrets in their text form, `whsec_<base64>`, as Svix and the
//! Standard Webhooks libraries show and read them.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::SignatureError;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Standard base64 that also reads unpadded input, as the Standard Webhooks
/// libraries do (they append `==` before decoding).
pub(crate) const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes `whsec_<base64>` (the prefix is optional, as in the Svix libraries)
/// into the raw key bytes that Standard Webhooks signs with.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    match LENIENT.decode(encoded) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(SignatureError::InvalidSecret),
    }
}

/// The text form of raw key bytes: `whsec_<base64>`.
pub fn format_secret(secret: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(secret))
}

/// The HMAC key provider-style schemes use for a secret: the UTF-8 bytes of its
/// text form, because Stripe's, GitHub's, Shopify's and Slack's verifiers take the
/// secret as a string and key the HMAC with that string's bytes.
pub fn provider_key(secret: &[u8]) -> Vec<u8> {
    format_secret(secret).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_through_their_text_form() {
        let text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let bytes = parse_secret(text).expect("spec secret parses");
        assert_eq!(bytes.len(), 24);
        assert_eq!(format_secret(&bytes), text);
        assert_eq!(provider_key(&bytes), text.as_bytes());
    }

    #[test]
    fn the_prefix_and_the_padding_are_optional() {
        let padded = parse_secret("whsec_dGVzdA==").expect("padded");
        assert_eq!(padded, b"test");
        assert_eq!(parse_secret("dGVzdA==").as_deref(), Ok(&b"test"[..]));
        assert_eq!(parse_secret("whsec_dGVzdA").as_deref(), Ok(&b"test"[..]));
    }

    #[test]
    fn garbage_and_empty_secrets_are_refused() {
        for bad in ["", "whsec_", "whsec_!!!notbase64!!!", "whsec_dGVzdA=x"] {
            assert_eq!(
                parse_secret(bad),
                Err(SignatureError::InvalidSecret),
                "{bad:?}"
            );
        }
    }
}
