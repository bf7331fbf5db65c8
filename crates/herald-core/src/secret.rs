//! Endpoint signing secrets in the Standard Webhooks format: `whsec_` followed by
//! the base64 of 24 to 64 random bytes.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

use crate::value::ValidationError;

/// The `whsec_` prefix of every secret Herald shows.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's HMAC key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret(Vec<u8>);

impl EndpointSecret {
    /// Svix's recommended size, and Herald's default.
    pub const DEFAULT_LEN: usize = 24;
    pub const MIN_LEN: usize = 24;
    pub const MAX_LEN: usize = 64;

    /// A fresh secret of [`Self::DEFAULT_LEN`] random bytes.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; Self::DEFAULT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses `whsec_<base64>` (the prefix is optional, as in Svix).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
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
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as users see it: `whsec_<base64>`.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
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
}
