//! HMAC (RFC 2104) over SHA-2 (FIPS 180-4), or SHA-1 for the custom header
//! when asked, shared by every scheme, with the one constant-time comparison
//! they all use.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::custom::Algorithm;

/// An HMAC that has read its whole message, ready to produce its tag or to be
/// compared with candidate tags.
#[derive(Clone)]
pub(crate) enum Keyed {
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
    Sha1(Hmac<Sha1>),
}

// HMAC accepts keys of any length (RFC 2104 §2 hashes long keys and pads short
// ones), so `new_from_slice` cannot fail for it.
const ANY_KEY_LENGTH: &str = "HMAC accepts keys of any length";

impl Keyed {
    /// HMAC of the concatenation of `parts` under `key`.
    pub(crate) fn new(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Self {
        fn feed<M: Mac>(mut mac: M, parts: &[&[u8]]) -> M {
            for part in parts {
                mac.update(part);
            }
            mac
        }
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(feed(
                Hmac::new_from_slice(key).expect(ANY_KEY_LENGTH),
                parts,
            )),
            Algorithm::Sha384 => Self::Sha384(feed(
                Hmac::new_from_slice(key).expect(ANY_KEY_LENGTH),
                parts,
            )),
            Algorithm::Sha512 => Self::Sha512(feed(
                Hmac::new_from_slice(key).expect(ANY_KEY_LENGTH),
                parts,
            )),
            Algorithm::Sha1 => Self::Sha1(feed(
                Hmac::new_from_slice(key).expect(ANY_KEY_LENGTH),
                parts,
            )),
        }
    }

    /// HMAC-SHA256 of the concatenation of `parts`: what every fixed scheme uses.
    pub(crate) fn sha256(key: &[u8], parts: &[&[u8]]) -> Self {
        Self::new(Algorithm::Sha256, key, parts)
    }

    /// The tag bytes.
    pub(crate) fn tag(self) -> Vec<u8> {
        match self {
            Self::Sha256(mac) => mac.finalize().into_bytes().to_vec(),
            Self::Sha384(mac) => mac.finalize().into_bytes().to_vec(),
            Self::Sha512(mac) => mac.finalize().into_bytes().to_vec(),
            Self::Sha1(mac) => mac.finalize().into_bytes().to_vec(),
        }
    }

    /// Whether `candidate` is the tag, compared in constant time (`verify_slice`
    /// uses `subtle`), so a forger learns nothing from how long a refusal takes.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        match self.clone() {
            Self::Sha256(mac) => mac.verify_slice(candidate).is_ok(),
            Self::Sha384(mac) => mac.verify_slice(candidate).is_ok(),
            Self::Sha512(mac) => mac.verify_slice(candidate).is_ok(),
            Self::Sha1(mac) => mac.verify_slice(candidate).is_ok(),
        }
    }
}

/// Decodes a tag written in lowercase hex, the only form the schemes write.
///
/// Most of the providers' verifiers compare the hex *text* (Stripe's Python and
/// Node libraries, Octokit's, and the checks GitHub's and Slack's docs show), so
/// they refuse `ABCD` where `abcd` was signed. Decoding either case would let a
/// header be changed without verification noticing.
pub(crate) fn decode_lower_hex(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|byte| byte.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        let tag = Keyed::sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).tag();
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tags_match_only_themselves() {
        let mac = Keyed::new(Algorithm::Sha512, b"key", &[b"body"]);
        let tag = mac.clone().tag();
        assert_eq!(tag.len(), 64);
        assert!(mac.matches(&tag));
        let mut wrong = tag.clone();
        wrong[0] ^= 1;
        assert!(!mac.matches(&wrong));
        assert!(!mac.matches(&tag[..32]));
        assert!(!mac.matches(b""));
    }

    #[test]
    fn only_lowercase_hex_is_read() {
        assert_eq!(decode_lower_hex("00ff"), Some(vec![0, 255]));
        assert_eq!(decode_lower_hex("00FF"), None);
        assert_eq!(decode_lower_hex("00Ff"), None);
        assert_eq!(decode_lower_hex("0"), None);
        assert_eq!(decode_lower_hex(""), Some(Vec::new()));
    }
}
