//! Stripe-style signatures, as [Stripe documents them](https://docs.stripe.com/webhooks#verify-manually):
//! `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(key, "{ts}.{body}")>`, one `v1=`
//! per secret while a secret is being rolled.

use std::time::Duration;

use crate::mac::{decode_lower_hex, Keyed};
use crate::time::{check_timestamp, parse_timestamp, unix_now};
use crate::SignatureError;

/// The header Stripe's libraries read.
pub const HEADER: &str = "Stripe-Signature";

/// Stripe's libraries' default tolerance: five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

fn keyed(key: &[u8], timestamp: i64, body: &[u8]) -> Keyed {
    Keyed::sha256(key, &[timestamp.to_string().as_bytes(), b".", body])
}

/// The lowercase hex signature of a body at `timestamp` under `key`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(keyed(key, timestamp, body).tag())
}

/// The `Stripe-Signature` value: `t=<ts>` then one `v1=` per key, current first.
pub fn header<K: AsRef<[u8]>>(
    keys: &[K],
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut value = format!("t={timestamp}");
    for key in keys {
        value.push_str(",v1=");
        value.push_str(&sign(key.as_ref(), timestamp, body));
    }
    Ok(value)
}

/// Verifies a `Stripe-Signature` value against the receiver's clock; see [`verify_at`].
pub fn verify(
    key: &[u8],
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_at(key, header, body, tolerance, unix_now())
}

/// Verifies a `Stripe-Signature` value as of `now` (Unix seconds): `t=` must be
/// within `tolerance` and any `v1=` must match, compared in constant time. Other
/// schemes (`v0=`) are ignored, as Stripe's libraries do.
pub fn verify_at(
    key: &[u8],
    header: &str,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let pairs = || {
        header
            .split(',')
            .filter_map(|item| item.trim().split_once('='))
    };
    let timestamp = pairs()
        .find(|(name, _)| *name == "t")
        .ok_or_else(|| SignatureError::MalformedHeader(HEADER.to_owned()))?;
    let timestamp = parse_timestamp(HEADER, timestamp.1)?;
    check_timestamp(timestamp, now, tolerance)?;
    let expected = keyed(key, timestamp, body);
    let matched = pairs()
        .filter(|(name, _)| *name == "v1")
        .filter_map(|(_, signature)| decode_lower_hex(signature))
        .any(|candidate| expected.matches(&candidate));
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    #[test]
    fn header_round_trips_through_the_verifier_with_each_key() {
        let value = header(&[b"whsec_new", b"whsec_old"], NOW, BODY).expect("two keys");
        assert!(value.starts_with("t=1700000000,v1="));
        assert_eq!(value.matches(",v1=").count(), 2);
        assert_eq!(
            verify_at(b"whsec_new", &value, BODY, DEFAULT_TOLERANCE, NOW),
            Ok(())
        );
        assert_eq!(
            verify_at(b"whsec_old", &value, BODY, DEFAULT_TOLERANCE, NOW),
            Ok(())
        );
        assert_eq!(
            verify_at(b"whsec_other", &value, BODY, DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn signs_what_stripe_documents() {
        // HMAC-SHA256("whsec_test", "1700000000.{body}"), computed independently with
        // Python's hmac module.
        assert_eq!(
            sign(b"whsec_test", NOW, b"{}"),
            "35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn tampering_and_stale_timestamps_fail() {
        let value = header(&[b"k"], NOW, BODY).expect("one key");
        assert_eq!(
            verify_at(b"k", &value, b"{}", DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
        let moved = value.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify_at(b"k", &moved, BODY, DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify_at(b"k", &value, BODY, DEFAULT_TOLERANCE, NOW + 301),
            Err(SignatureError::TimestampTooOld)
        );
        assert_eq!(
            verify_at(b"k", "v1=abcd", BODY, DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::MalformedHeader(HEADER.into()))
        );
        assert_eq!(
            verify(b"k", &value, BODY, DEFAULT_TOLERANCE),
            Err(SignatureError::TimestampTooOld)
        );
    }
}
