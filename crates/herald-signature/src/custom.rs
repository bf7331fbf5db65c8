//! A configurable HMAC header for receivers with their own convention: a header
//! name, an algorithm (HMAC-SHA256/384/512, RFC 2104 over FIPS 180-4, or
//! HMAC-SHA1 for the conventions that still use it) and an encoding (hex or
//! base64) of the HMAC of the body.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::mac::{decode_lower_hex, Keyed};
use crate::SignatureError;

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Algorithm {
    /// HMAC-SHA256, the default.
    #[default]
    Sha256,
    /// HMAC-SHA384.
    Sha384,
    /// HMAC-SHA512.
    Sha512,
    /// HMAC-SHA1, for senders and receivers that still use it (GitHub's
    /// legacy `X-Hub-Signature`, Twilio-style callbacks). Collisions in SHA-1
    /// do not carry over to HMAC-SHA1 (RFC 6194), but prefer SHA-256 wherever
    /// both sides can.
    Sha1,
}

/// How the tag is written into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Encoding {
    /// Lowercase hexadecimal, the default; uppercase is refused when verifying,
    /// as the providers' verifiers refuse it.
    #[default]
    Hex,
    /// Standard base64 with padding (RFC 4648 §4).
    Base64,
}

/// A custom HMAC header: `<header>: <encoding(HMAC-<algorithm>(key, body))>`.
///
/// The header name is checked once, on construction or deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "RawHmacScheme", rename_all = "camelCase")
)]
pub struct HmacScheme {
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
}

/// What the wire form of [`HmacScheme`] holds before the header name is checked.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHmacScheme {
    header: String,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default)]
    encoding: Encoding,
}

#[cfg(feature = "serde")]
impl TryFrom<RawHmacScheme> for HmacScheme {
    type Error = SignatureError;

    fn try_from(raw: RawHmacScheme) -> Result<Self, Self::Error> {
        Self::new(raw.header, raw.algorithm, raw.encoding)
    }
}

/// Whether `name` is an HTTP field name: a non-empty token (RFC 9110 §5.1, §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl HmacScheme {
    /// A scheme writing to `header`, which must be an HTTP token.
    pub fn new(
        header: impl Into<String>,
        algorithm: Algorithm,
        encoding: Encoding,
    ) -> Result<Self, SignatureError> {
        let header = header.into();
        if !is_token(&header) {
            return Err(SignatureError::InvalidHeaderName(header));
        }
        Ok(Self {
            header,
            algorithm,
            encoding,
        })
    }

    /// The header the signature goes into.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The hash under the HMAC.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// How the tag is written.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The header value for a body under `key`.
    pub fn sign(&self, key: &[u8], body: &[u8]) -> String {
        let tag = Keyed::new(self.algorithm, key, &[body]).tag();
        match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => STANDARD.encode(tag),
        }
    }

    /// Verifies a header value, comparing in constant time.
    pub fn verify(&self, key: &[u8], value: &str, body: &[u8]) -> Result<(), SignatureError> {
        let value = value.trim();
        let candidate = match self.encoding {
            Encoding::Hex => decode_lower_hex(value),
            Encoding::Base64 => STANDARD.decode(value).ok(),
        }
        .ok_or_else(|| SignatureError::MalformedHeader(self.header.clone()))?;
        if Keyed::new(self.algorithm, key, &[body]).matches(&candidate) {
            Ok(())
        } else {
            Err(SignatureError::NoMatchingSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(algorithm: Algorithm, encoding: Encoding) -> HmacScheme {
        HmacScheme::new("X-Signature", algorithm, encoding).expect("valid header")
    }

    #[test]
    fn signs_with_each_algorithm_and_encoding() {
        // Computed independently with Python's hmac, hashlib and base64 modules.
        assert_eq!(
            scheme(Algorithm::Sha256, Encoding::Hex).sign(b"whsec_test", b"{}"),
            "46bdc2a2e83964bd2695acc6a1f97162d8bafc135a071aa5cd5c99aae5481440"
        );
        assert_eq!(
            scheme(Algorithm::Sha384, Encoding::Hex).sign(b"whsec_test", b"{}"),
            "de840a55513d168e315bd06102b68173f217a73b400a5f0c80fe9815d66018f4140abc170be2c6a1f0ea738e40452cdb"
        );
        assert_eq!(
            scheme(Algorithm::Sha1, Encoding::Hex).sign(b"whsec_test", b"{}"),
            "c2ab738e153d2aa7fc8714f684c69290c3d3a0fe"
        );
        assert_eq!(
            scheme(Algorithm::Sha512, Encoding::Base64).sign(b"whsec_test", b"{}"),
            "ZeOEiIF3OggdnETVXTQMMqKMbyO8v7RIxiyLVXZ89Xcjf5wrnL+xfs5QsTozYztcvbfl8Qlis5k2vtlR+Py/9w=="
        );
    }

    #[test]
    fn every_combination_round_trips_and_refuses_tampering() {
        for algorithm in [
            Algorithm::Sha256,
            Algorithm::Sha384,
            Algorithm::Sha512,
            Algorithm::Sha1,
        ] {
            for encoding in [Encoding::Hex, Encoding::Base64] {
                let scheme = scheme(algorithm, encoding);
                let value = scheme.sign(b"key", b"body");
                assert_eq!(scheme.verify(b"key", &value, b"body"), Ok(()));
                assert_eq!(
                    scheme.verify(b"key", &value, b"bodY"),
                    Err(SignatureError::NoMatchingSignature)
                );
                assert_eq!(
                    scheme.verify(b"key", "not encoded!", b"body"),
                    Err(SignatureError::MalformedHeader("X-Signature".into()))
                );
            }
        }
    }

    #[test]
    fn a_signature_of_another_algorithm_does_not_verify() {
        let value = scheme(Algorithm::Sha512, Encoding::Hex).sign(b"key", b"body");
        assert_eq!(
            scheme(Algorithm::Sha256, Encoding::Hex).verify(b"key", &value, b"body"),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn header_names_must_be_http_tokens() {
        for bad in ["", "X Signature", "X-Sig:", "X-Sig\r\nInjected: 1", "é"] {
            assert_eq!(
                HmacScheme::new(bad, Algorithm::Sha256, Encoding::Hex),
                Err(SignatureError::InvalidHeaderName(bad.into()))
            );
        }
    }
}
