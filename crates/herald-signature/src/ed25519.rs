//! Asymmetric Standard Webhooks signatures (`v1a`): Ed25519 (RFC 8032) over
//! `"{id}.{timestamp}.{body}"`, with keys shown as `whsk_<base64>` (the sender's
//! secret key) and `whpk_<base64>` (the public key receivers verify with).
//!
//! The sender alone holds the secret key, so a receiver's copy of the public key
//! cannot be used to forge deliveries. The curve arithmetic is `ed25519-dalek`'s;
//! this module only frames keys and signatures as the Standard Webhooks spec
//! writes them.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer};

use crate::secret::LENIENT;
use crate::SignatureError;

/// The prefix of a secret key's text form.
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// The prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// The version tag of asymmetric signatures in `webhook-signature`.
pub const VERSION: &str = "v1a";

/// What is signed: the same content as the symmetric `v1` scheme.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// An Ed25519 signing key. `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        Self(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Reads `whsk_<base64>` (the prefix is required, so a symmetric secret is never
    /// mistaken for one). The base64 holds either the 32-byte seed (RFC 8032) or the
    /// 64 bytes of seed then public key that libsodium and Svix write; in the second
    /// form the public half must belong to the seed.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text
            .strip_prefix(SECRET_KEY_PREFIX)
            .ok_or(SignatureError::InvalidSecret)?;
        let bytes = LENIENT
            .decode(encoded)
            .map_err(|_| SignatureError::InvalidSecret)?;
        match bytes.len() {
            32 => {
                let seed: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| SignatureError::InvalidSecret)?;
                Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            64 => {
                let pair: [u8; 64] = bytes
                    .try_into()
                    .map_err(|_| SignatureError::InvalidSecret)?;
                ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
                    .map(Self)
                    .map_err(|_| SignatureError::InvalidSecret)
            }
            _ => Err(SignatureError::InvalidSecret),
        }
    }

    /// The text form, `whsk_` + base64 of seed then public key (64 bytes).
    pub fn to_text(&self) -> String {
        format!(
            "{SECRET_KEY_PREFIX}{}",
            STANDARD.encode(self.0.to_keypair_bytes())
        )
    }

    /// The public key receivers verify with.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// One signature entry, `v1a,<base64 of the 64-byte signature>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let signature = self.0.sign(&signed_content(msg_id, timestamp, body));
        format!("{VERSION},{}", STANDARD.encode(signature.to_bytes()))
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        // `SigningKey`'s own equality compares in constant time.
        self.0 == other.0
    }
}

impl Eq for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key().to_text())
    }
}

/// An Ed25519 public key, shown as `whpk_<base64 of 32 bytes>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads `whpk_<base64>`; the prefix is required.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or(SignatureError::InvalidPublicKey)?;
        let bytes: [u8; 32] = LENIENT
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SignatureError::InvalidPublicKey)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SignatureError::InvalidPublicKey)
    }

    /// The text form, `whpk_<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.0.as_bytes()))
    }

    /// Whether `encoded` (the base64 after `v1a,`) is this key's signature of the
    /// message. Uses strict verification (RFC 8032 §5.1.7 plus rejecting weak and
    /// non-canonical points), so a signature has exactly one valid encoding.
    pub(crate) fn matches(&self, msg_id: &str, timestamp: i64, body: &[u8], encoded: &str) -> bool {
        let Some(bytes) = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        else {
            return false;
        };
        let signature = Signature::from_bytes(&bytes);
        let content = signed_content(msg_id, timestamp, body);
        self.0.verify_strict(&content, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_text())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, test 1: the empty message.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_key() -> SecretKey {
        let seed = hex::decode(RFC_SEED).expect("hex");
        SecretKey::parse(&format!("{SECRET_KEY_PREFIX}{}", STANDARD.encode(seed))).expect("seed")
    }

    #[test]
    fn the_rfc_8032_key_derives_its_public_key_and_signature() {
        let key = rfc_key();
        assert_eq!(hex::encode(key.public_key().0.as_bytes()), RFC_PUBLIC);
        let signature = key.0.sign(b"");
        assert_eq!(hex::encode(signature.to_bytes()), RFC_SIGNATURE);
    }

    #[test]
    fn keys_round_trip_through_both_text_forms() {
        let key = SecretKey::generate();
        let text = key.to_text();
        assert!(text.starts_with("whsk_"));
        assert_eq!(SecretKey::parse(&text).expect("64-byte form"), key);
        let public = key.public_key().to_text();
        assert!(public.starts_with("whpk_"));
        assert_eq!(PublicKey::parse(&public).expect("public"), key.public_key());
        assert_eq!(format!("{key:?}"), format!("SecretKey({public})"));
    }

    #[test]
    fn a_keypair_whose_halves_disagree_is_refused() {
        let mut pair = SecretKey::generate().0.to_keypair_bytes();
        pair[40] ^= 1;
        let text = format!("{SECRET_KEY_PREFIX}{}", STANDARD.encode(pair));
        assert_eq!(SecretKey::parse(&text), Err(SignatureError::InvalidSecret));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "whsk_",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsk_dGVzdA==",
            "whsk_!!!",
        ] {
            assert_eq!(
                SecretKey::parse(bad),
                Err(SignatureError::InvalidSecret),
                "{bad}"
            );
        }
        for bad in [
            "",
            "whpk_",
            "whpk_dGVzdA==",
            "whsk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ] {
            assert_eq!(
                PublicKey::parse(bad),
                Err(SignatureError::InvalidPublicKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = SecretKey::generate();
        let entry = key.sign("msg_1", 1_700_000_000, b"{}");
        let encoded = entry.strip_prefix("v1a,").expect("tagged");
        assert_eq!(STANDARD.decode(encoded).expect("base64").len(), 64);
        let public = key.public_key();
        assert!(public.matches("msg_1", 1_700_000_000, b"{}", encoded));
        assert!(!public.matches("msg_2", 1_700_000_000, b"{}", encoded));
        assert!(!public.matches("msg_1", 1_700_000_001, b"{}", encoded));
        assert!(!public.matches("msg_1", 1_700_000_000, b"{ }", encoded));
        assert!(!SecretKey::generate().public_key().matches(
            "msg_1",
            1_700_000_000,
            b"{}",
            encoded
        ));
        assert!(!public.matches("msg_1", 1_700_000_000, b"{}", "not base64"));
    }
}
