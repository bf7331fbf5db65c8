//! [Standard Webhooks](https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md)
//! signatures, Herald's default and what Svix sends: `webhook-signature: v1,<base64
//! HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, several space-separated
//! entries during a secret rotation. Endpoints with an Ed25519 key get the
//! spec's asymmetric `v1a,<base64 signature>` entries instead ([`crate::ed25519`]).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::ed25519::{self, PublicKey};
use crate::mac::Keyed;
use crate::time::{check_timestamp, parse_timestamp, unix_now};
use crate::{SignatureError, SigningKey, VerifyingKey};

/// The message id header; receivers use it as an idempotency key.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The signing time header, in seconds since the Unix epoch.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The signatures header: space-separated `v1,<base64>` entries.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Svix's name for [`WEBHOOK_ID`], sent too so Svix receivers keep working.
pub const SVIX_ID: &str = "svix-id";
/// Svix's name for [`WEBHOOK_TIMESTAMP`].
pub const SVIX_TIMESTAMP: &str = "svix-timestamp";
/// Svix's name for [`WEBHOOK_SIGNATURE`].
pub const SVIX_SIGNATURE: &str = "svix-signature";

/// How far a timestamp may be from the receiver's clock: five minutes, as in the
/// spec's reference libraries.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The version tag of symmetric (HMAC-SHA256) signatures.
const VERSION: &str = "v1";

/// The tag of one message under one secret.
fn keyed(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Keyed {
    let timestamp = timestamp.to_string();
    Keyed::sha256(
        secret,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// One signature entry, `v1,<base64>`, of a message under raw key bytes.
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = keyed(secret, msg_id, timestamp, body).tag();
    format!("{VERSION},{}", STANDARD.encode(tag))
}

/// One signature entry of a message: `v1,` under a symmetric key, `v1a,` under
/// an Ed25519 one.
pub fn sign_with(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    match key {
        SigningKey::Symmetric(secret) => sign(secret, msg_id, timestamp, body),
        SigningKey::Asymmetric(key) => key.sign(msg_id, timestamp, body),
    }
}

/// The `webhook-signature` value for every key that is valid now, current
/// first: one entry each, separated by single spaces (the reference libraries
/// split on exactly one space).
pub fn signature_header(
    keys: &[SigningKey],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let entries: Vec<String> = keys
        .iter()
        .map(|key| sign_with(key, msg_id, timestamp, body))
        .collect();
    Ok(entries.join(" "))
}

/// Every header a Standard Webhooks delivery carries: `webhook-id`,
/// `webhook-timestamp`, `webhook-signature` and their `svix-*` twins.
pub fn headers(
    keys: &[SigningKey],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, SignatureError> {
    let signature = signature_header(keys, msg_id, timestamp, body)?;
    let timestamp = timestamp.to_string();
    Ok([
        (WEBHOOK_ID, msg_id),
        (WEBHOOK_TIMESTAMP, &timestamp),
        (WEBHOOK_SIGNATURE, &signature),
        (SVIX_ID, msg_id),
        (SVIX_TIMESTAMP, &timestamp),
        (SVIX_SIGNATURE, &signature),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect())
}

/// The three header values a receiver verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id` (or `svix-id`).
    pub id: &'a str,
    /// `webhook-timestamp` (or `svix-timestamp`).
    pub timestamp: &'a str,
    /// `webhook-signature` (or `svix-signature`).
    pub signature: &'a str,
}

impl<'a> WebhookHeaders<'a> {
    /// Reads the headers through `get`, which looks a lowercase header name up in
    /// whatever map the receiver's HTTP library has. Uses the `webhook-*` family
    /// when all three are present and otherwise the `svix-*` one, never a mix.
    pub fn from_lookup(
        mut get: impl FnMut(&str) -> Option<&'a str>,
    ) -> Result<Self, SignatureError> {
        let mut family = |id, timestamp, signature| {
            Some(Self {
                id: get(id)?,
                timestamp: get(timestamp)?,
                signature: get(signature)?,
            })
        };
        if let Some(found) = family(WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE) {
            return Ok(found);
        }
        if let Some(found) = family(SVIX_ID, SVIX_TIMESTAMP, SVIX_SIGNATURE) {
            return Ok(found);
        }
        let missing = [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
            .into_iter()
            .find(|name| get(name).is_none())
            .unwrap_or(WEBHOOK_SIGNATURE);
        Err(SignatureError::MissingHeader(missing.to_owned()))
    }
}

/// Verifies a delivery against the receiver's clock; see [`verify_at`].
pub fn verify(
    secret: &[u8],
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_at(secret, headers, body, tolerance, unix_now())
}

/// Verifies a delivery as of `now` (Unix seconds): the timestamp must be within
/// `tolerance` of `now`, and any `v1,` entry must match under `secret`, compared in
/// constant time. Entries of other versions (such as asymmetric `v1a,`) are skipped.
pub fn verify_at(
    secret: &[u8],
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = parse_timestamp(WEBHOOK_TIMESTAMP, headers.timestamp)?;
    check_timestamp(timestamp, now, tolerance)?;
    let expected = keyed(secret, headers.id, timestamp, body);
    let matched = entries(headers.signature, VERSION)
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| expected.matches(&candidate));
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

/// Verifies an asymmetric delivery against the receiver's clock; see
/// [`verify_asymmetric_at`].
pub fn verify_asymmetric(
    public_key: &PublicKey,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_asymmetric_at(public_key, headers, body, tolerance, unix_now())
}

/// Verifies a delivery signed with Ed25519 as of `now`: the timestamp must be
/// within `tolerance`, and any `v1a,` entry must be `public_key`'s signature of
/// the message. Symmetric `v1,` entries are skipped.
pub fn verify_asymmetric_at(
    public_key: &PublicKey,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = parse_timestamp(WEBHOOK_TIMESTAMP, headers.timestamp)?;
    check_timestamp(timestamp, now, tolerance)?;
    let matched = entries(headers.signature, ed25519::VERSION)
        .any(|encoded| public_key.matches(headers.id, timestamp, body, encoded));
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

/// Verifies with whichever kind of key the receiver holds.
pub fn verify_key_at(
    key: &VerifyingKey,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    match key {
        VerifyingKey::Symmetric(secret) => verify_at(secret, headers, body, tolerance, now),
        VerifyingKey::Asymmetric(public) => {
            verify_asymmetric_at(public, headers, body, tolerance, now)
        }
    }
}

/// The encoded signatures of one version in a `webhook-signature` value;
/// malformed entries are skipped, not fatal, so one bad entry cannot hide a
/// good one.
fn entries<'a>(header: &'a str, version: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(move |(tag, _)| *tag == version)
        .map(|(_, encoded)| encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_secret;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn secret(text: &str) -> Vec<u8> {
        parse_secret(text).expect("test secret parses")
    }

    fn check(
        secret: &[u8],
        id: &str,
        ts: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let headers = WebhookHeaders {
            id,
            timestamp: ts,
            signature,
        };
        verify_at(secret, &headers, body, DEFAULT_TOLERANCE, TS)
    }

    #[test]
    fn signs_the_standard_webhooks_test_vectors() {
        assert_eq!(
            sign(&secret(SECRET), ID, TS, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            sign(
                &secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verifies_the_test_vector() {
        let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            check(&secret(SECRET), ID, "1614265330", signature, BODY),
            Ok(())
        );
    }

    #[test]
    fn a_rotation_header_verifies_with_either_secret_but_not_a_third() {
        let current = secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let previous = secret(SECRET);
        let keys = [
            SigningKey::Symmetric(current.clone()),
            SigningKey::Symmetric(previous.clone()),
        ];
        let header = signature_header(&keys, ID, TS, BODY).expect("two secrets");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            sign(&current, ID, TS, BODY),
            "current secret first"
        );
        assert_eq!(check(&current, ID, "1614265330", &header, BODY), Ok(()));
        assert_eq!(check(&previous, ID, "1614265330", &header, BODY), Ok(()));
        assert_eq!(
            check(b"another secret", ID, "1614265330", &header, BODY),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn signing_without_a_secret_is_refused() {
        assert_eq!(
            signature_header(&[], ID, TS, BODY),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn tampered_body_id_or_timestamp_fail() {
        let key = secret(SECRET);
        let signature = sign(&key, ID, TS, BODY);
        let no_match = Err(SignatureError::NoMatchingSignature);
        assert_eq!(
            check(
                &key,
                ID,
                "1614265330",
                &signature,
                br#"{"test": 2432232315}"#
            ),
            no_match
        );
        assert_eq!(
            check(&key, "msg_other", "1614265330", &signature, BODY),
            no_match
        );
        assert_eq!(check(&key, ID, "1614265331", &signature, BODY), no_match);
        let mut flipped = signature.into_bytes();
        flipped[5] ^= 1;
        let flipped = String::from_utf8(flipped).expect("still ascii");
        assert_eq!(check(&key, ID, "1614265330", &flipped, BODY), no_match);
    }

    #[test]
    fn timestamps_outside_the_tolerance_fail_even_when_signed() {
        let key = secret(SECRET);
        let old = TS - 301;
        let headers_old = sign(&key, ID, old, BODY);
        assert_eq!(
            check(&key, ID, &old.to_string(), &headers_old, BODY),
            Err(SignatureError::TimestampTooOld)
        );
        let new = TS + 301;
        let headers_new = sign(&key, ID, new, BODY);
        assert_eq!(
            check(&key, ID, &new.to_string(), &headers_new, BODY),
            Err(SignatureError::TimestampTooNew)
        );
        let edge = TS - 300;
        assert_eq!(
            check(
                &key,
                ID,
                &edge.to_string(),
                &sign(&key, ID, edge, BODY),
                BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn verify_uses_the_current_time() {
        let key = secret(SECRET);
        let now = unix_now();
        let signature = sign(&key, ID, now, BODY);
        let fresh = WebhookHeaders {
            id: ID,
            timestamp: &now.to_string(),
            signature: &signature,
        };
        assert_eq!(verify(&key, &fresh, BODY, DEFAULT_TOLERANCE), Ok(()));
        let vector = WebhookHeaders {
            id: ID,
            timestamp: "1614265330",
            signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        };
        assert_eq!(
            verify(&key, &vector, BODY, DEFAULT_TOLERANCE),
            Err(SignatureError::TimestampTooOld)
        );
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        let key = secret(SECRET);
        let good = sign(&key, ID, TS, BODY);
        let header = format!("v2,abc v1a,xyz garbage v1,!!! v1, {good}");
        assert_eq!(check(&key, ID, "1614265330", &header, BODY), Ok(()));
        assert_eq!(
            check(&key, ID, "1614265330", "", BODY),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            check(&key, ID, "not a number", &good, BODY),
            Err(SignatureError::MalformedHeader(WEBHOOK_TIMESTAMP.into()))
        );
    }

    #[test]
    fn headers_carry_both_families_with_the_same_values() {
        let key = secret(SECRET);
        let headers =
            headers(&[SigningKey::Symmetric(key.clone())], ID, TS, BODY).expect("one secret");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                WEBHOOK_ID,
                WEBHOOK_TIMESTAMP,
                WEBHOOK_SIGNATURE,
                SVIX_ID,
                SVIX_TIMESTAMP,
                SVIX_SIGNATURE
            ]
        );
        assert_eq!(get(WEBHOOK_TIMESTAMP), Some("1614265330"));
        assert_eq!(get(SVIX_SIGNATURE), get(WEBHOOK_SIGNATURE));
        let parsed = WebhookHeaders::from_lookup(get).expect("all present");
        assert_eq!(
            verify_at(&key, &parsed, BODY, DEFAULT_TOLERANCE, TS),
            Ok(())
        );
    }

    #[test]
    fn lookup_falls_back_to_the_svix_family_and_names_what_is_missing() {
        let svix_only = |name: &str| match name {
            SVIX_ID => Some("msg_1"),
            SVIX_TIMESTAMP => Some("1"),
            SVIX_SIGNATURE => Some("v1,x"),
            _ => None,
        };
        let found = WebhookHeaders::from_lookup(svix_only).expect("svix family");
        assert_eq!(found.id, "msg_1");
        let half = |name: &str| (name == WEBHOOK_ID || name == SVIX_TIMESTAMP).then_some("x");
        assert_eq!(
            WebhookHeaders::from_lookup(half),
            Err(SignatureError::MissingHeader(WEBHOOK_TIMESTAMP.into()))
        );
    }
}
