//! Secrets at rest: with `HERALD_MAIN_KEY` set, endpoint secrets (HMAC keys
//! and Ed25519 private keys), the values of sensitive endpoint headers,
//! sources' secrets and the stored JWT secret are sealed with XChaCha20-Poly1305 before they are
//! written, and opened when read (`SqlStore::with_main_keys`).
//!
//! A sealed value is `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`:
//! a random 24-byte nonce per value, and the id of the key that sealed it
//! (the first 8 bytes of SHA-256 over the key, in hex), so a rotated-out key
//! is still found to read what it sealed. The associated data names where the
//! value lives (column and row), so a sealed value copied to another row or
//! column does not open. In JSON columns a sealed value is the object
//! `{"$sealed": "<value>"}` (no plaintext there is such an object); in text
//! columns it carries the prefix `$sealed:`.
//!
//! The key ids that may have sealed something are kept in the setting
//! `main_key_ids`; the process checks at start that it holds every one
//! ([`crate::SqlStore::check_main_keys`]), so a wrong or missing key fails
//! there, never later as an unreadable endpoint.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
/// The prefix of a sealed value in a text column.
pub(crate) const TEXT_PREFIX: &str = "$sealed:";
/// The key of the object a sealed value is in a JSON column.
pub(crate) const JSON_KEY: &str = "$sealed";

/// One 256-bit main key and its id.
#[derive(Clone)]
pub struct MainKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MainKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A main key that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MainKeyError {
    #[error("a main key must be 32 bytes in standard base64 (44 characters, e.g. `herald main-key generate`)")]
    Malformed,
    #[error("main key {0} is given twice")]
    Duplicate(String),
}

impl MainKey {
    /// Parses a key written as standard base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, MainKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| MainKeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| MainKeyError::Malformed)?;
        Ok(Self::from_bytes(&key))
    }

    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        Self {
            id: hex_of(&digest[..8]),
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// A fresh random key, as `parse` reads it.
    pub fn generate() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// The key's id: what sealed values and the start-up check name it by.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys a process holds: the current one seals, every one opens.
#[derive(Debug, Clone)]
pub struct MainKeys {
    current: Option<MainKey>,
    previous: Vec<MainKey>,
}

/// A value that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with main key {0}, which this process does not hold")]
    UnknownKey(String),
    #[error("not a sealed value")]
    Malformed,
    #[error("does not open with main key {0}: wrong key, or the value was altered or moved")]
    Rejected(String),
}

impl MainKeys {
    /// `current` seals new values (`None`: they are stored as they are);
    /// `previous` are rotated-out keys, still read.
    pub fn new(current: Option<MainKey>, previous: Vec<MainKey>) -> Result<Self, MainKeyError> {
        let mut seen = std::collections::HashSet::new();
        for key in current.iter().chain(&previous) {
            if !seen.insert(key.id.clone()) {
                return Err(MainKeyError::Duplicate(key.id.clone()));
            }
        }
        Ok(Self { current, previous })
    }

    /// No keys: every value is stored and read as it is.
    pub fn none() -> Self {
        Self {
            current: None,
            previous: Vec::new(),
        }
    }

    /// Every key held, the current one first.
    pub fn all(&self) -> impl Iterator<Item = &MainKey> {
        self.current.iter().chain(&self.previous)
    }

    pub fn current(&self) -> Option<&MainKey> {
        self.current.as_ref()
    }

    /// Whether `id` is one of the keys held.
    pub fn holds(&self, id: &str) -> bool {
        self.current
            .iter()
            .chain(&self.previous)
            .any(|k| k.id == id)
    }

    /// Seals `plaintext` for the place `context` names, with the current
    /// key; `None` without one.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Option<String> {
        let key = self.current.as_ref()?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for inputs beyond 2^38 bytes.
            .unwrap_or_else(|_| {
                unreachable!("XChaCha20-Poly1305 sealed {} bytes", plaintext.len())
            });
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        Some(format!(
            "{VERSION}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// Opens a value `seal` made for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::Malformed)?;
        if body.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Rejected(id.to_owned()))
    }

    /// The id of the key that sealed `sealed`, if it is a sealed value.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        (parts.next() == Some(VERSION)).then(|| parts.next())?
    }

    /// `value` as a text column stores it: sealed with its prefix, or as it is.
    pub(crate) fn seal_text(&self, context: &str, value: &str) -> String {
        match self.seal(context, value.as_bytes()) {
            Some(sealed) => format!("{TEXT_PREFIX}{sealed}"),
            None => value.to_owned(),
        }
    }

    /// A text column's value, opened if it is sealed.
    pub(crate) fn open_text(&self, context: &str, stored: &str) -> Result<String, OpenError> {
        match stored.strip_prefix(TEXT_PREFIX) {
            None => Ok(stored.to_owned()),
            Some(sealed) => {
                String::from_utf8(self.open(context, sealed)?).map_err(|_| OpenError::Malformed)
            }
        }
    }

    /// `value` as a JSON column stores it: `{"$sealed": …}` over its JSON
    /// text, or as it is.
    pub(crate) fn seal_json(&self, context: &str, value: serde_json::Value) -> serde_json::Value {
        match self.seal(context, value.to_string().as_bytes()) {
            Some(sealed) => serde_json::json!({ JSON_KEY: sealed }),
            None => value,
        }
    }

    /// A JSON column's value, opened if it is sealed.
    pub(crate) fn open_json(
        &self,
        context: &str,
        stored: serde_json::Value,
    ) -> Result<serde_json::Value, OpenError> {
        match sealed_json(&stored) {
            None => Ok(stored),
            Some(sealed) => serde_json::from_slice(&self.open(context, sealed)?)
                .map_err(|_| OpenError::Malformed),
        }
    }
}

/// The sealed value a JSON column's value is, if it is one.
pub(crate) fn sealed_json(stored: &serde_json::Value) -> Option<&str> {
    match stored {
        serde_json::Value::Object(map) if map.len() == 1 => map.get(JSON_KEY)?.as_str(),
        _ => None,
    }
}

/// Where an endpoint's secrets live (the associated data of their seal).
pub(crate) fn secrets_context(endpoint_id: &str) -> String {
    format!("endpoint.secrets/{endpoint_id}")
}

/// Where a sensitive header's value lives.
pub(crate) fn header_context(endpoint_id: &str, name: &str) -> String {
    format!(
        "endpoint.headers/{endpoint_id}/{}",
        name.to_ascii_lowercase()
    )
}

/// Where a source's secret lives.
pub(crate) fn source_secret_context(source_id: &str) -> String {
    format!("source.secret/{source_id}")
}

/// Where a server setting lives.
pub(crate) fn setting_context(name: &str) -> String {
    format!("server_setting/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: &MainKey, previous: &[&MainKey]) -> MainKeys {
        MainKeys::new(
            Some(current.clone()),
            previous.iter().map(|k| (*k).clone()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn values_open_only_in_their_place_with_a_held_key() {
        let a = MainKey::parse(&MainKey::generate()).unwrap();
        let b = MainKey::parse(&MainKey::generate()).unwrap();
        let sealed = keys(&a, &[]).seal("here", b"secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(MainKeys::key_id_of(&sealed), Some(a.id()));
        assert_eq!(keys(&a, &[]).open("here", &sealed).unwrap(), b"secret");
        // Rotated: the old key still reads; new values use the new one.
        let rotated = keys(&b, &[&a]);
        assert_eq!(rotated.open("here", &sealed).unwrap(), b"secret");
        assert_eq!(
            MainKeys::key_id_of(&rotated.seal("here", b"x").unwrap()),
            Some(b.id())
        );
        assert!(matches!(
            keys(&b, &[]).open("here", &sealed),
            Err(OpenError::UnknownKey(id)) if id == a.id()
        ));
        assert!(matches!(
            keys(&a, &[]).open("elsewhere", &sealed),
            Err(OpenError::Rejected(_))
        ));
        // Two seals of one value differ (a nonce each).
        assert_ne!(keys(&a, &[]).seal("here", b"secret").unwrap(), sealed);
    }

    #[test]
    fn malformed_keys_and_duplicates_are_refused() {
        assert_eq!(
            MainKey::parse("short").unwrap_err(),
            MainKeyError::Malformed
        );
        assert_eq!(
            MainKey::parse(&STANDARD.encode([0u8; 16])).unwrap_err(),
            MainKeyError::Malformed
        );
        let a = MainKey::parse(&MainKey::generate()).unwrap();
        assert!(matches!(
            MainKeys::new(Some(a.clone()), vec![a]),
            Err(MainKeyError::Duplicate(_))
        ));
    }

    #[test]
    fn without_a_key_values_stay_as_they_are() {
        let none = MainKeys::none();
        assert_eq!(none.seal_text("c", "plain"), "plain");
        assert_eq!(none.open_text("c", "plain").unwrap(), "plain");
        let json = serde_json::json!({"current": "whsec_x"});
        assert_eq!(none.seal_json("c", json.clone()), json);
        assert_eq!(none.open_json("c", json.clone()).unwrap(), json);
    }
}
