//! The spec-facing list of what a receiver's verifier must accept and refuse:
//! the Standard Webhooks test vectors (design doc §2), known answers for every
//! scheme, and one test per way a delivery can be wrong, each expecting its typed
//! [`SignatureError`]. Some repeat unit tests in `src/` on purpose: this file is
//! the list to read against the spec.

use std::time::Duration;

use herald_signature::ed25519::SecretKey;
use herald_signature::standard::{self, WebhookHeaders, DEFAULT_TOLERANCE};
use herald_signature::{
    parse_secret, Algorithm, Encoding, HmacScheme, SignatureError, SignatureScheme, SigningKey,
    VerifyingKey,
};

/// The first Standard Webhooks test vector.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: i64 = 1614265330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;
const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// Another endpoint's secret: the second vector's.
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// RFC 8032 §7.1 test 1's seed and public key, in Herald's text forms.
const ED25519_SECRET: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const ED25519_PUBLIC: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn secret(text: &str) -> Vec<u8> {
    parse_secret(text).expect("test secret parses")
}

fn symmetric(text: &str) -> SigningKey {
    SigningKey::parse(text).expect("test secret parses")
}

fn ed25519_key() -> SigningKey {
    SigningKey::Asymmetric(SecretKey::parse(ED25519_SECRET).expect("RFC 8032 seed"))
}

fn custom(algorithm: Algorithm, encoding: Encoding) -> SignatureScheme {
    SignatureScheme::Hmac(
        HmacScheme::new("X-Signature", algorithm, encoding).expect("valid header name"),
    )
}

/// Every scheme but `ed25519`, which needs a key of its own kind.
fn symmetric_schemes() -> Vec<SignatureScheme> {
    vec![
        SignatureScheme::Standard,
        SignatureScheme::Stripe,
        SignatureScheme::Github,
        SignatureScheme::Shopify,
        SignatureScheme::Slack,
        custom(Algorithm::Sha256, Encoding::Hex),
    ]
}

/// Looks a header up case-insensitively, as HTTP header maps do.
fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn verify_at(
    scheme: &SignatureScheme,
    key: &VerifyingKey,
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    scheme.verify_at(key, |name| get(headers, name), body, DEFAULT_TOLERANCE, now)
}

fn standard_headers<'a>(timestamp: &'a str, signature: &'a str) -> WebhookHeaders<'a> {
    WebhookHeaders {
        id: ID,
        timestamp,
        signature,
    }
}

#[test]
fn the_standard_webhooks_vectors_sign_and_verify() {
    let vectors = [
        (SECRET, ID, TS, BODY, SIGNATURE),
        (
            OTHER_SECRET,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            &br#"{"email":"test@example.com","username":"test_user"}"#[..],
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];
    for (text, id, timestamp, body, expected) in vectors {
        let key = secret(text);
        assert_eq!(standard::sign(&key, id, timestamp, body), expected);
        let headers = WebhookHeaders {
            id,
            timestamp: &timestamp.to_string(),
            signature: expected,
        };
        assert_eq!(
            standard::verify_at(&key, &headers, body, DEFAULT_TOLERANCE, timestamp),
            Ok(())
        );
        // The same through the scheme-generic entry point, with the text Herald shows.
        let wire = owned(&[
            ("webhook-id", id),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", expected),
        ]);
        let key = VerifyingKey::parse(text).expect("whsec_ text");
        assert_eq!(
            verify_at(&SignatureScheme::Standard, &key, &wire, body, timestamp),
            Ok(())
        );
    }
}

#[test]
fn the_svix_twins_alone_verify() {
    let wire = owned(&[
        ("svix-id", ID),
        ("svix-timestamp", "1614265330"),
        ("svix-signature", SIGNATURE),
    ]);
    let key = VerifyingKey::parse(SECRET).expect("whsec_ text");
    assert_eq!(
        verify_at(&SignatureScheme::Standard, &key, &wire, BODY, TS),
        Ok(())
    );
}

#[test]
fn every_scheme_signs_its_known_answer() {
    // Computed independently: the HMACs with Python's hmac module keyed with the
    // `whsec_` text (as the providers' libraries key them), the Ed25519 signature
    // with the `cryptography` package from RFC 8032's first seed.
    let cases = [
        (
            SignatureScheme::Stripe,
            "Stripe-Signature",
            "t=1614265330,v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964",
        ),
        (
            SignatureScheme::Github,
            "X-Hub-Signature-256",
            "sha256=80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c",
        ),
        (
            SignatureScheme::Shopify,
            "X-Shopify-Hmac-SHA256",
            "gOyKic480iEzoQZsrstNBP6nRnZXyFFNcX7ELDilyUw=",
        ),
        (
            SignatureScheme::Slack,
            "X-Slack-Signature",
            "v0=cddefca50684fde6ab7a4b4868a953cc180e93a68f4ad4f0a13b91731cd987fa",
        ),
        (
            custom(Algorithm::Sha384, Encoding::Base64),
            "X-Signature",
            "nAaHhDYowEbn4zsBTbR1f9bFvRz//VUNBkMyQSoa7H9wd3rhJvnT/5t6Turqltay",
        ),
    ];
    for (scheme, header, expected) in cases {
        let key = symmetric(SECRET);
        let headers = scheme
            .headers(std::slice::from_ref(&key), ID, TS, BODY)
            .expect("signs");
        assert_eq!(get(&headers, header), Some(expected), "{}", scheme.name());
        assert_eq!(
            verify_at(&scheme, &key.verifying_key(), &headers, BODY, TS),
            Ok(()),
            "{}",
            scheme.name()
        );
    }

    let key = ed25519_key();
    assert_eq!(key.verifying_key().to_text(), ED25519_PUBLIC);
    let headers = SignatureScheme::Ed25519
        .headers(&[key], ID, TS, BODY)
        .expect("signs");
    let signature = "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";
    assert_eq!(get(&headers, "webhook-signature"), Some(signature));
    let public = VerifyingKey::parse(ED25519_PUBLIC).expect("whpk_ text");
    assert_eq!(
        verify_at(&SignatureScheme::Ed25519, &public, &headers, BODY, TS),
        Ok(())
    );
}

#[test]
fn empty_secrets_are_refused_with_invalid_secret() {
    for empty in ["whsec_", ""] {
        assert_eq!(
            parse_secret(empty),
            Err(SignatureError::InvalidSecret),
            "{empty:?}"
        );
        assert_eq!(
            VerifyingKey::parse(empty),
            Err(SignatureError::InvalidSecret),
            "{empty:?}"
        );
        assert_eq!(
            SigningKey::parse(empty),
            Err(SignatureError::InvalidSecret),
            "{empty:?}"
        );
    }
}

#[test]
fn a_receiver_never_accepts_a_signing_key() {
    assert_eq!(
        VerifyingKey::parse(ED25519_SECRET),
        Err(SignatureError::UnsuitableKey)
    );
}

#[test]
fn a_bare_version_tag_matches_nothing() {
    let key = secret(SECRET);
    for bare in ["v1,", "v1, v1,", "v1"] {
        assert_eq!(
            standard::verify_at(
                &key,
                &standard_headers("1614265330", bare),
                BODY,
                DEFAULT_TOLERANCE,
                TS
            ),
            Err(SignatureError::NoMatchingSignature),
            "{bare:?}"
        );
    }
    let public = VerifyingKey::parse(ED25519_PUBLIC).expect("whpk_ text");
    assert_eq!(
        standard::verify_key_at(
            &public,
            &standard_headers("1614265330", "v1a,"),
            BODY,
            DEFAULT_TOLERANCE,
            TS
        ),
        Err(SignatureError::NoMatchingSignature)
    );
}

#[test]
fn timestamps_301_seconds_away_are_refused_and_300_pass() {
    let cases = [
        (SignatureScheme::Standard, symmetric(SECRET)),
        (SignatureScheme::Ed25519, ed25519_key()),
        (SignatureScheme::Stripe, symmetric(SECRET)),
        (SignatureScheme::Slack, symmetric(SECRET)),
    ];
    for (scheme, key) in cases {
        let verifying = key.verifying_key();
        for (offset, expected) in [
            (-301, Err(SignatureError::TimestampTooOld)),
            (-300, Ok(())),
            (300, Ok(())),
            (301, Err(SignatureError::TimestampTooNew)),
        ] {
            // Signed `offset` seconds from the receiver's clock.
            let headers = scheme
                .headers(std::slice::from_ref(&key), ID, TS + offset, BODY)
                .expect("signs");
            assert_eq!(
                verify_at(&scheme, &verifying, &headers, BODY, TS),
                expected,
                "{} signed {offset:+} s away",
                scheme.name()
            );
        }
    }
}

#[test]
fn the_tolerance_is_the_callers_to_choose() {
    let key = secret(SECRET);
    let headers = standard_headers("1614265330", SIGNATURE);
    let ten_minutes = Duration::from_secs(600);
    assert_eq!(
        standard::verify_at(&key, &headers, BODY, ten_minutes, TS + 600),
        Ok(())
    );
    assert_eq!(
        standard::verify_at(&key, &headers, BODY, ten_minutes, TS + 601),
        Err(SignatureError::TimestampTooOld)
    );
}

#[test]
fn one_valid_entry_among_garbage_and_other_keys_passes() {
    let key = secret(SECRET);
    let other = standard::sign(&secret(OTHER_SECRET), ID, TS, BODY);
    let foreign_ed25519 = SecretKey::generate().sign(ID, TS, BODY);
    for header in [
        format!("v1,garbage {other} v2,abc {foreign_ed25519} nonsense v1, {SIGNATURE}"),
        format!("{SIGNATURE} {other} v1,!!!"),
        format!("{other}\t{SIGNATURE}"),
    ] {
        assert_eq!(
            standard::verify_at(
                &key,
                &standard_headers("1614265330", &header),
                BODY,
                DEFAULT_TOLERANCE,
                TS
            ),
            Ok(()),
            "{header:?}"
        );
    }
    // Without the valid entry the same header refuses.
    let without = format!("v1,garbage {other} {foreign_ed25519}");
    assert_eq!(
        standard::verify_at(
            &key,
            &standard_headers("1614265330", &without),
            BODY,
            DEFAULT_TOLERANCE,
            TS
        ),
        Err(SignatureError::NoMatchingSignature)
    );

    // Stripe's header has the same shape: any `v1=` may match.
    let stripe = owned(&[(
        "Stripe-Signature",
        "t=1614265330,v1=00ff,v0=abcd,v1=not-hex,\
         v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964",
    )]);
    let verifying = VerifyingKey::parse(SECRET).expect("whsec_ text");
    assert_eq!(
        verify_at(&SignatureScheme::Stripe, &verifying, &stripe, BODY, TS),
        Ok(())
    );
}

#[test]
fn an_ed25519_entry_verifies_beside_hmac_entries() {
    let key = ed25519_key();
    let header = format!(
        "{SIGNATURE} {} v1a,bm90IGEgc2lnbmF0dXJl",
        standard::sign_with(&key, ID, TS, BODY)
    );
    let public = VerifyingKey::parse(ED25519_PUBLIC).expect("whpk_ text");
    assert_eq!(
        standard::verify_key_at(
            &public,
            &standard_headers("1614265330", &header),
            BODY,
            DEFAULT_TOLERANCE,
            TS
        ),
        Ok(())
    );
    // The symmetric receiver of the same endpoint reads its `v1,` entry.
    assert_eq!(
        standard::verify_at(
            &secret(SECRET),
            &standard_headers("1614265330", &header),
            BODY,
            DEFAULT_TOLERANCE,
            TS
        ),
        Ok(())
    );
}

#[test]
fn missing_standard_headers_are_named() {
    let complete = [
        ("webhook-id", ID),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SIGNATURE),
    ];
    for (missing, _) in complete {
        let present: Vec<(&str, &str)> = complete
            .into_iter()
            .filter(|(name, _)| *name != missing)
            .collect();
        let lookup = |name: &str| {
            present
                .iter()
                .find(|(candidate, _)| *candidate == name)
                .map(|(_, value)| *value)
        };
        assert_eq!(
            WebhookHeaders::from_lookup(lookup),
            Err(SignatureError::MissingHeader(missing.to_owned()))
        );
    }
    assert_eq!(
        WebhookHeaders::from_lookup(|_| None),
        Err(SignatureError::MissingHeader("webhook-id".to_owned()))
    );
}

#[test]
fn missing_headers_are_named_by_every_scheme() {
    let schemes = symmetric_schemes()
        .into_iter()
        .chain([SignatureScheme::Ed25519]);
    for scheme in schemes {
        let key = if scheme.is_asymmetric() {
            ed25519_key()
        } else {
            symmetric(SECRET)
        };
        let headers = scheme
            .headers(std::slice::from_ref(&key), ID, TS, BODY)
            .expect("signs");
        // Drop each header the scheme needs in turn; for Standard Webhooks that
        // means both twins, or the other family would stand in.
        for dropped in scheme.header_names() {
            let dropped = dropped.to_ascii_lowercase();
            if dropped.starts_with("svix-") {
                continue;
            }
            let twin = dropped.replace("webhook-", "svix-");
            let rest: Vec<(String, String)> = headers
                .iter()
                .filter(|(name, _)| {
                    let name = name.to_ascii_lowercase();
                    name != dropped && name != twin
                })
                .cloned()
                .collect();
            assert_eq!(
                verify_at(&scheme, &key.verifying_key(), &rest, BODY, TS),
                Err(SignatureError::MissingHeader(dropped.clone())),
                "{} without {dropped}",
                scheme.name()
            );
        }
    }
}

#[test]
fn malformed_timestamps_are_refused_with_malformed_header() {
    let key = secret(SECRET);
    for bad in [
        "",
        "soon",
        "1614265330.5",
        "1.6e9",
        "0x603e8b72",
        "99999999999999999999",
    ] {
        assert_eq!(
            standard::verify_at(
                &key,
                &standard_headers(bad, SIGNATURE),
                BODY,
                DEFAULT_TOLERANCE,
                TS
            ),
            Err(SignatureError::MalformedHeader(
                "webhook-timestamp".to_owned()
            )),
            "{bad:?}"
        );
    }

    let verifying = VerifyingKey::parse(SECRET).expect("whsec_ text");
    let slack = owned(&[
        (
            "X-Slack-Signature",
            "v0=cddefca50684fde6ab7a4b4868a953cc180e93a68f4ad4f0a13b91731cd987fa",
        ),
        ("X-Slack-Request-Timestamp", "yesterday"),
    ]);
    assert_eq!(
        verify_at(&SignatureScheme::Slack, &verifying, &slack, BODY, TS),
        Err(SignatureError::MalformedHeader(
            "X-Slack-Request-Timestamp".to_owned()
        ))
    );
    for stripe in ["t=yesterday,v1=00", "v1=00", ""] {
        let headers = owned(&[("Stripe-Signature", stripe)]);
        assert_eq!(
            verify_at(&SignatureScheme::Stripe, &verifying, &headers, BODY, TS),
            Err(SignatureError::MalformedHeader(
                "Stripe-Signature".to_owned()
            )),
            "{stripe:?}"
        );
    }
}

#[test]
fn uppercase_hex_signatures_are_refused_as_the_providers_refuse_them() {
    let key = symmetric(SECRET);
    for scheme in [
        SignatureScheme::Stripe,
        SignatureScheme::Github,
        SignatureScheme::Slack,
        custom(Algorithm::Sha256, Encoding::Hex),
    ] {
        let headers = scheme
            .headers(std::slice::from_ref(&key), ID, TS, BODY)
            .expect("signs");
        let shouted: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| {
                // Uppercase only the hex digits, never a prefix like `sha256=`.
                let (prefix, tag) = value.rsplit_once('=').unwrap_or(("", value));
                let separator = if prefix.is_empty() { "" } else { "=" };
                (
                    name.clone(),
                    format!("{prefix}{separator}{}", tag.to_ascii_uppercase()),
                )
            })
            .collect();
        assert_ne!(shouted, headers, "{}", scheme.name());
        assert!(
            verify_at(&scheme, &key.verifying_key(), &shouted, BODY, TS).is_err(),
            "{} accepted {shouted:?}",
            scheme.name()
        );
    }
}

#[test]
fn a_key_of_the_wrong_kind_is_refused() {
    let symmetric_key = VerifyingKey::parse(SECRET).expect("whsec_ text");
    let public = VerifyingKey::parse(ED25519_PUBLIC).expect("whpk_ text");
    assert_eq!(
        verify_at(&SignatureScheme::Ed25519, &symmetric_key, &[], BODY, TS),
        Err(SignatureError::UnsuitableKey)
    );
    for scheme in symmetric_schemes().into_iter().skip(1) {
        assert_eq!(
            verify_at(&scheme, &public, &[], BODY, TS),
            Err(SignatureError::UnsuitableKey),
            "{}",
            scheme.name()
        );
    }
}
