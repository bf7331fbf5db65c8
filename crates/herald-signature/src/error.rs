//! The one error type of this crate: why a secret, a header or a signature was refused.

/// Why signing could not start or a delivery failed verification.
///
/// Receivers should answer every variant with a 4xx and not process the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The secret is not `whsec_` (optional) followed by non-empty base64.
    #[error("secret must be 'whsec_' followed by non-empty base64")]
    InvalidSecret,
    /// The public key is not `whpk_` followed by the base64 of a valid Ed25519 point.
    #[error("public key must be 'whpk_' followed by the base64 of a 32-byte Ed25519 key")]
    InvalidPublicKey,
    /// The key is of the wrong kind for what was asked: a `whsk_` secret key given
    /// to a receiver, a `whpk_` public key to a symmetric scheme, or a symmetric
    /// secret to the `ed25519` scheme.
    #[error("this kind of key cannot be used here")]
    UnsuitableKey,
    /// Signing was asked for with an empty list of secrets.
    #[error("no signing secret given")]
    NoSecret,
    /// A custom header name is not an HTTP token (RFC 9110 §5.6.2).
    #[error("header name {0:?} is not a valid HTTP token")]
    InvalidHeaderName(String),
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but cannot be parsed.
    #[error("malformed header {0}")]
    MalformedHeader(String),
    /// The signed timestamp is older than the tolerance allows (a possible replay).
    #[error("timestamp is too old")]
    TimestampTooOld,
    /// The signed timestamp is further in the future than the tolerance allows.
    #[error("timestamp is too new")]
    TimestampTooNew,
    /// No signature in the headers matches the body and the secret.
    #[error("no matching signature")]
    NoMatchingSignature,
}
