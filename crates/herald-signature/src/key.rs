//! The keys a sender signs with and a receiver verifies with, whichever kind
//! they are: a symmetric `whsec_` secret or an Ed25519 `whsk_`/`whpk_` pair.

use crate::ed25519::{self, PublicKey, SecretKey};
use crate::secret::{format_secret, parse_secret};
use crate::SignatureError;

/// A key deliveries are signed with.
#[derive(Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// The raw bytes of a `whsec_` secret: HMAC-SHA256 (`v1`) and the provider schemes.
    Symmetric(Vec<u8>),
    /// An Ed25519 secret key: asymmetric `v1a` signatures.
    Asymmetric(SecretKey),
}

impl SigningKey {
    /// Reads `whsk_<base64>` as an Ed25519 key and anything else as a `whsec_`
    /// secret (whose prefix is optional, as in the Svix libraries).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        if text.starts_with(ed25519::SECRET_KEY_PREFIX) {
            SecretKey::parse(text).map(Self::Asymmetric)
        } else {
            parse_secret(text).map(Self::Symmetric)
        }
    }

    /// The text form: `whsec_…` or `whsk_…`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Symmetric(bytes) => format_secret(bytes),
            Self::Asymmetric(key) => key.to_text(),
        }
    }

    /// What a receiver verifies with: the secret itself, or the public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Symmetric(bytes) => VerifyingKey::Symmetric(bytes.clone()),
            Self::Asymmetric(key) => VerifyingKey::Asymmetric(key.public_key()),
        }
    }

    /// Whether this is an Ed25519 key.
    pub fn is_asymmetric(&self) -> bool {
        matches!(self, Self::Asymmetric(_))
    }
}

impl std::fmt::Debug for SigningKey {
    // Secrets stay out of logs; an Ed25519 key shows its public half.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symmetric(_) => f.write_str("Symmetric(..)"),
            Self::Asymmetric(key) => write!(f, "Asymmetric({key:?})"),
        }
    }
}

/// A key a receiver verifies deliveries with.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// The raw bytes of the endpoint's `whsec_` secret.
    Symmetric(Vec<u8>),
    /// The endpoint's Ed25519 public key, `whpk_…`.
    Asymmetric(PublicKey),
}

impl VerifyingKey {
    /// Reads what Herald shows for an endpoint: `whpk_<base64>` as a public key,
    /// anything else as a `whsec_` secret (prefix optional).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        if text.starts_with(ed25519::PUBLIC_KEY_PREFIX) {
            PublicKey::parse(text).map(Self::Asymmetric)
        } else if text.starts_with(ed25519::SECRET_KEY_PREFIX) {
            // A receiver must never hold the sender's secret key.
            Err(SignatureError::UnsuitableKey)
        } else {
            parse_secret(text).map(Self::Symmetric)
        }
    }

    /// The text form: `whsec_…` or `whpk_…`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Symmetric(bytes) => format_secret(bytes),
            Self::Asymmetric(key) => key.to_text(),
        }
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symmetric(_) => f.write_str("Symmetric(..)"),
            Self::Asymmetric(key) => write!(f, "Asymmetric({key:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart_by_their_prefix() {
        let symmetric = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("whsec");
        assert!(!symmetric.is_asymmetric());
        assert_eq!(
            symmetric.to_text(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        let pair = SigningKey::Asymmetric(SecretKey::generate());
        let parsed = SigningKey::parse(&pair.to_text()).expect("whsk");
        assert_eq!(parsed, pair);
        let public = pair.verifying_key().to_text();
        assert!(public.starts_with("whpk_"));
        assert_eq!(
            VerifyingKey::parse(&public).expect("whpk"),
            pair.verifying_key()
        );
        assert_eq!(
            VerifyingKey::parse(&pair.to_text()),
            Err(SignatureError::UnsuitableKey)
        );
        assert!(!format!("{pair:?}").contains("whsk_"));
    }
}
