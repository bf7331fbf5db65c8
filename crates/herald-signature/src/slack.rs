//! Slack-style signatures, as [Slack documents them](https://api.slack.com/authentication/verifying-requests-from-slack):
//! `X-Slack-Signature: v0=<hex HMAC-SHA256(key, "v0:{ts}:{body}")>` with the
//! timestamp in `X-Slack-Request-Timestamp`.
//!
//! One signature per header, so only the current secret signs during a rotation.

use std::time::Duration;

use crate::mac::{decode_lower_hex, Keyed};
use crate::time::{check_timestamp, parse_timestamp, unix_now};
use crate::SignatureError;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// The header carrying the signed timestamp, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";

/// The replay window Slack recommends: five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const VERSION: &str = "v0";

fn keyed(key: &[u8], timestamp: i64, body: &[u8]) -> Keyed {
    let timestamp = timestamp.to_string();
    Keyed::sha256(
        key,
        &[VERSION.as_bytes(), b":", timestamp.as_bytes(), b":", body],
    )
}

/// The `X-Slack-Signature` value of a body at `timestamp` under `key`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "{VERSION}={}",
        hex::encode(keyed(key, timestamp, body).tag())
    )
}

/// Verifies the two Slack headers against the receiver's clock; see [`verify_at`].
pub fn verify(
    key: &[u8],
    signature: &str,
    timestamp: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    verify_at(key, signature, timestamp, body, tolerance, unix_now())
}

/// Verifies the two Slack headers as of `now` (Unix seconds): the timestamp must be
/// within `tolerance` and the signature must match, compared in constant time.
pub fn verify_at(
    key: &[u8],
    signature: &str,
    timestamp: &str,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = parse_timestamp(TIMESTAMP_HEADER, timestamp)?;
    check_timestamp(timestamp, now, tolerance)?;
    let candidate = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(decode_lower_hex)
        .ok_or_else(|| SignatureError::MalformedHeader(SIGNATURE_HEADER.to_owned()))?;
    if keyed(key, timestamp, body).matches(&candidate) {
        Ok(())
    } else {
        Err(SignatureError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn signs_the_versioned_basestring() {
        // Computed independently with Python's hmac module.
        assert_eq!(
            sign(b"whsec_test", NOW, b"{}"),
            "v0=10d0c97cd92160feaaf97d319f353b179fe1f14204d77a9256ee0bd7d526dd61"
        );
    }

    #[test]
    fn round_trips_and_refuses_tampering_and_stale_timestamps() {
        let value = sign(b"k", NOW, b"{}");
        let ts = NOW.to_string();
        assert_eq!(
            verify_at(b"k", &value, &ts, b"{}", DEFAULT_TOLERANCE, NOW),
            Ok(())
        );
        assert_eq!(
            verify_at(b"k", &value, &ts, b"{ }", DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify_at(b"k", &value, "1700000001", b"{}", DEFAULT_TOLERANCE, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
        assert_eq!(
            verify_at(b"k", &value, &ts, b"{}", DEFAULT_TOLERANCE, NOW + 301),
            Err(SignatureError::TimestampTooOld)
        );
        assert_eq!(
            verify(b"k", &value, &ts, b"{}", DEFAULT_TOLERANCE),
            Err(SignatureError::TimestampTooOld)
        );
    }
}
