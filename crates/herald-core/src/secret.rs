//! Endpoint signing keys: a symmetric secret in the Standard Webhooks format
//! (`whsec_` followed by the base64 of 24 to 64 random bytes), or an Ed25519 key
//! pair (`whsk_` secret key, `whpk_` public key) for asymmetric signatures.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_signature::ed25519;
use herald_signature::SigningKey;
use rand::RngCore;

use crate::value::ValidationError;

/// The `whsec_` prefix of every symmetric secret Herald shows.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing key. `Debug` never prints the secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret(SigningKey);

impl EndpointSecret {
    /// Svix's recommended size, and Herald's default.
    pub const DEFAULT_LEN: usize = 24;
    pub const MIN_LEN: usize = 24;
    pub const MAX_LEN: usize = 64;

    /// A fresh symmetric secret of [`Self::DEFAULT_LEN`] random bytes.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; Self::DEFAULT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(SigningKey::Symmetric(bytes))
    }

    /// A fresh Ed25519 key pair.
    pub fn generate_asymmetric() -> Self {
        Self(SigningKey::Asymmetric(ed25519::SecretKey::generate()))
    }

    /// A fresh key of the kind an endpoint needs: Ed25519 or symmetric.
    pub fn generate_for(asymmetric: bool) -> Self {
        if asymmetric {
            Self::generate_asymmetric()
        } else {
            Self::generate()
        }
    }

    /// Parses `whsk_<base64>` as an Ed25519 secret key, and anything else as
    /// `whsec_<base64>` (the prefix is optional, as in Svix).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.starts_with(ed25519::SECRET_KEY_PREFIX) {
            return ed25519::SecretKey::parse(s)
                .map(|key| Self(SigningKey::Asymmetric(key)))
                .map_err(|_| {
                    ValidationError::new(
                        "secret",
                        "must be 'whsk_' followed by the base64 of a 32-byte Ed25519 seed \
                         (or of the seed and its public key, 64 bytes)",
                    )
                });
        }
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let bytes = STANDARD.decode(encoded).map_err(|_| {
            ValidationError::new(
                "secret",
                "must be 'whsec_' followed by base64-encoded bytes",
            )
        })?;
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return Err(ValidationError::new(
                "secret",
                format!(
                    "must encode between {} and {} bytes",
                    Self::MIN_LEN,
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(SigningKey::Symmetric(bytes)))
    }

    /// The key deliveries are signed with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// Whether this is an Ed25519 key pair.
    pub fn is_asymmetric(&self) -> bool {
        self.0.is_asymmetric()
    }

    /// The key in full, as stored: `whsec_<base64>` or `whsk_<base64>`.
    pub fn expose(&self) -> String {
        self.0.to_text()
    }

    /// What the tenant is shown and its receivers verify with: the `whsec_`
    /// secret, or only the `whpk_` public key of a key pair.
    pub fn shown(&self) -> String {
        self.0.verifying_key().to_text()
    }
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_round_trip_through_their_text_form() {
        let secret = EndpointSecret::generate();
        let shown = secret.expose();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(EndpointSecret::parse(&shown).unwrap(), secret);
    }

    #[test]
    fn secrets_accept_the_spec_vectors_and_refuse_garbage() {
        assert!(EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(EndpointSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(EndpointSecret::parse("whsec_short").is_err());
        assert!(EndpointSecret::parse("whsec_!!!notbase64!!!notbase64!!!!").is_err());
    }

    #[test]
    fn key_pairs_show_only_their_public_key() {
        let pair = EndpointSecret::generate_asymmetric();
        assert!(pair.is_asymmetric());
        let stored = pair.expose();
        assert!(stored.starts_with("whsk_"));
        assert!(pair.shown().starts_with("whpk_"));
        assert_eq!(EndpointSecret::parse(&stored).unwrap(), pair);
        assert!(EndpointSecret::parse("whsk_dGVzdA==").is_err());
        let symmetric = EndpointSecret::generate();
        assert_eq!(symmetric.shown(), symmetric.expose());
        assert!(!symmetric.is_asymmetric());
    }
}
