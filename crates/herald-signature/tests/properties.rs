//! Properties every signature scheme must have, checked over arbitrary
//! deliveries: any body (empty, binary, not UTF-8), any secret of 24–64 random
//! bytes, any Ed25519 seed, any message id and any timestamp.
//!
//! 1. What a scheme signs, its verifier accepts, with each key that signed it.
//! 2. Changing any one byte of the body makes verification fail with
//!    [`SignatureError::NoMatchingSignature`].
//! 3. Changing any one byte of the signature header makes verification fail.
//!
//! Each property runs every scheme on each generated delivery, so a failure
//! names the scheme and proptest shrinks the delivery that broke it.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_signature::ed25519::SecretKey;
use herald_signature::{
    standard, Algorithm, Encoding, HmacScheme, SignatureError, SignatureScheme, SigningKey,
    VerifyingKey,
};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;

/// Enough cases to explore each scheme, few enough to finish in seconds in a
/// debug build (each case runs all twelve schemes).
const CASES: u32 = 64;
const TOLERANCE: Duration = Duration::from_secs(300);

/// Everything a sender chooses about one delivery.
#[derive(Debug, Clone)]
struct Delivery {
    /// Distinct `whsec_` secrets, current first.
    secrets: Vec<Vec<u8>>,
    /// Distinct Ed25519 seeds, current first.
    seeds: Vec<[u8; 32]>,
    msg_id: String,
    timestamp: i64,
    body: Vec<u8>,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    // Sets, so the keys of a rotation are distinct and no entry of a
    // rotation header can stand in for another.
    let secrets = btree_set(vec(any::<u8>(), 24..=64), 1..=3);
    // Two Ed25519 keys are enough for a rotation and keep the debug build quick.
    let seeds = btree_set(any::<[u8; 32]>(), 1..=2);
    // Herald's ids are header-safe ASCII (`msg_…` or a tenant's `eventId`).
    let msg_id = "[!-~]{1,64}";
    let body = prop_oneof![
        1 => Just(Vec::new()),
        3 => any::<String>().prop_map(String::into_bytes),
        6 => vec(any::<u8>(), 1..512),
    ];
    (secrets, seeds, msg_id, any::<i64>(), body).prop_map(
        |(secrets, seeds, msg_id, timestamp, body)| Delivery {
            secrets: secrets.into_iter().collect(),
            seeds: seeds.into_iter().collect(),
            msg_id,
            timestamp,
            body,
        },
    )
}

/// Every scheme Herald signs with, the custom HMAC in each algorithm × encoding.
fn every_scheme() -> Vec<SignatureScheme> {
    let mut schemes = vec![
        SignatureScheme::Standard,
        SignatureScheme::Ed25519,
        SignatureScheme::Stripe,
        SignatureScheme::Github,
        SignatureScheme::Shopify,
        SignatureScheme::Slack,
    ];
    for algorithm in [Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512] {
        for encoding in [Encoding::Hex, Encoding::Base64] {
            let scheme = HmacScheme::new("X-Signature", algorithm, encoding)
                .expect("X-Signature is an HTTP token");
            schemes.push(SignatureScheme::Hmac(scheme));
        }
    }
    schemes
}

/// The keys the endpoint holds for `scheme`: its Ed25519 keys (each read from
/// its seed's `whsk_` text) or its `whsec_` secrets.
fn signing_keys(scheme: &SignatureScheme, delivery: &Delivery) -> Vec<SigningKey> {
    if scheme.is_asymmetric() {
        delivery
            .seeds
            .iter()
            .map(|seed| {
                let text = format!("whsk_{}", STANDARD.encode(seed));
                SigningKey::Asymmetric(SecretKey::parse(&text).expect("any 32-byte seed is a key"))
            })
            .collect()
    } else {
        delivery
            .secrets
            .iter()
            .cloned()
            .map(SigningKey::Symmetric)
            .collect()
    }
}

/// The keys a receiver can verify a delivery signed with `keys` with: every one
/// for the schemes with room for several signatures, the current one otherwise.
fn verifying_keys(scheme: &SignatureScheme, keys: &[SigningKey]) -> Vec<VerifyingKey> {
    let rotates = matches!(
        scheme,
        SignatureScheme::Standard | SignatureScheme::Ed25519 | SignatureScheme::Stripe
    );
    let count = if rotates { keys.len() } else { 1 };
    keys[..count]
        .iter()
        .map(SigningKey::verifying_key)
        .collect()
}

/// The headers that carry signatures (not ids or timestamps), lowercase.
fn signature_headers(scheme: &SignatureScheme) -> Vec<String> {
    let names: Vec<&str> = match scheme {
        SignatureScheme::Standard | SignatureScheme::Ed25519 => {
            vec![standard::WEBHOOK_SIGNATURE, standard::SVIX_SIGNATURE]
        }
        SignatureScheme::Slack => vec![herald_signature::slack::SIGNATURE_HEADER],
        other => other.header_names(),
    };
    names.into_iter().map(str::to_ascii_lowercase).collect()
}

fn sign(
    scheme: &SignatureScheme,
    keys: &[SigningKey],
    delivery: &Delivery,
) -> Vec<(String, String)> {
    scheme
        .headers(keys, &delivery.msg_id, delivery.timestamp, &delivery.body)
        .expect("keys of the scheme's kind were given")
}

/// Verifies as a receiver would, at the moment the delivery was signed.
fn verify(
    scheme: &SignatureScheme,
    key: &VerifyingKey,
    headers: &[(String, String)],
    timestamp: i64,
    body: &[u8],
) -> Result<(), SignatureError> {
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    scheme.verify_at(key, lookup, body, TOLERANCE, timestamp)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn every_scheme_verifies_what_it_signed_with_each_signing_key(delivery in delivery()) {
        for scheme in every_scheme() {
            let keys = signing_keys(&scheme, &delivery);
            let headers = sign(&scheme, &keys, &delivery);
            for key in verifying_keys(&scheme, &keys) {
                prop_assert_eq!(
                    verify(&scheme, &key, &headers, delivery.timestamp, &delivery.body),
                    Ok(()),
                    "{}",
                    scheme.name()
                );
            }
        }
    }

    #[test]
    fn changing_one_byte_of_the_body_fails_with_no_matching_signature(
        delivery in delivery(),
        at in any::<Index>(),
        flip in 1..=u8::MAX,
    ) {
        // An empty body has no byte to change; the other properties cover it.
        prop_assume!(!delivery.body.is_empty());
        let mut tampered = delivery.body.clone();
        let position = at.index(tampered.len());
        tampered[position] ^= flip;
        for scheme in every_scheme() {
            let keys = signing_keys(&scheme, &delivery);
            let headers = sign(&scheme, &keys, &delivery);
            for key in verifying_keys(&scheme, &keys) {
                prop_assert_eq!(
                    verify(&scheme, &key, &headers, delivery.timestamp, &tampered),
                    Err(SignatureError::NoMatchingSignature),
                    "{}",
                    scheme.name()
                );
            }
        }
    }

    #[test]
    fn changing_one_byte_of_the_signature_header_fails(
        delivery in delivery(),
        at in any::<Index>(),
        // Header values reach a verifier as text, and `HeaderValue::to_str`
        // refuses any byte outside ASCII, so the change keeps the byte ASCII.
        // Flipping 0x20 swaps the case of a letter, which must fail too.
        flip in prop_oneof![Just(0x20_u8), 1..0x80_u8],
    ) {
        for scheme in every_scheme() {
            // One key, so the changed entry is the only one that could match.
            let keys = signing_keys(&scheme, &delivery)[..1].to_vec();
            let mut headers = sign(&scheme, &keys, &delivery);
            let targets = signature_headers(&scheme);
            for (name, value) in &mut headers {
                if targets.contains(&name.to_ascii_lowercase()) {
                    let mut bytes = std::mem::take(value).into_bytes();
                    let position = at.index(bytes.len());
                    bytes[position] ^= flip;
                    *value = String::from_utf8(bytes).expect("ASCII stays ASCII");
                }
            }
            let key = keys[0].verifying_key();
            let outcome = verify(&scheme, &key, &headers, delivery.timestamp, &delivery.body);
            prop_assert!(outcome.is_err(), "{} accepted {:?}", scheme.name(), headers);
        }
    }
}
