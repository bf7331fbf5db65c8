//! Cross-checks every signature this crate makes with the providers' own
//! verifiers (herald-verifiers): the `standardwebhooks`, `svix`, `stripe` and
//! `slack_sdk` packages from PyPI, PyNaCl for Ed25519, GitHub's
//! `@octokit/webhooks-methods` from npm, and Shopify's and the custom header's
//! documented HMAC recipes — all pinned, installed once under
//! `$HOME/.cache/herald/`.
//!
//! Skips with a loud notice when Python, Node or a registry is unavailable,
//! unless `HERALD_REQUIRE_SERVICES=1`, in which case it fails.

use herald_signature::ed25519::SecretKey;
use herald_signature::{
    format_secret, parse_secret, unix_now, Algorithm, Encoding, HmacScheme, SignatureScheme,
    SigningKey,
};
use herald_verifiers::{skip_or_fail, verify, Case, Expect, HmacOptions, Verifier};

/// A scheme with the keys it signs with, current first, and the texts of the
/// keys its receivers configure: ones that must verify, and ones that must not.
struct Signer {
    scheme: SignatureScheme,
    keys: Vec<SigningKey>,
    accepted: Vec<(&'static str, String)>,
    refused: Vec<(&'static str, String)>,
}

fn signers() -> Vec<Signer> {
    let current = parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("valid secret");
    let previous = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid secret");
    let stranger = format_secret(b"a secret the sender never used");
    let both = vec![
        SigningKey::Symmetric(current.clone()),
        SigningKey::Symmetric(previous.clone()),
    ];
    let current_text = format_secret(&current);
    let previous_text = format_secret(&previous);
    let custom = [
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha256, Encoding::Hex),
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha384, Encoding::Base64),
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha512, Encoding::Hex),
    ]
    .map(|scheme| SignatureScheme::Hmac(scheme.expect("valid header")));

    let mut signers = Vec::new();
    // Standard Webhooks and Stripe sign with every valid secret, so both verify
    // through a rotation; the others have room for one signature, the current.
    for scheme in [SignatureScheme::Standard, SignatureScheme::Stripe] {
        signers.push(Signer {
            scheme,
            keys: both.clone(),
            accepted: vec![
                ("current secret", current_text.clone()),
                ("previous secret", previous_text.clone()),
            ],
            refused: vec![("unknown secret", stranger.clone())],
        });
    }
    let single = [
        SignatureScheme::Github,
        SignatureScheme::Shopify,
        SignatureScheme::Slack,
    ];
    for scheme in single.into_iter().chain(custom) {
        signers.push(Signer {
            scheme,
            keys: both.clone(),
            accepted: vec![("current secret", current_text.clone())],
            refused: vec![
                ("previous secret", previous_text.clone()),
                ("unknown secret", stranger.clone()),
            ],
        });
    }
    let pair = SigningKey::Asymmetric(SecretKey::generate());
    let other = SigningKey::Asymmetric(SecretKey::generate());
    signers.push(Signer {
        scheme: SignatureScheme::Ed25519,
        keys: vec![pair.clone()],
        accepted: vec![("public key", pair.verifying_key().to_text())],
        refused: vec![("another public key", other.verifying_key().to_text())],
    });
    // A change of key kind: during its grace period both entries are sent,
    // and receivers of either kind keep verifying.
    signers.push(Signer {
        scheme: SignatureScheme::Ed25519,
        keys: vec![pair.clone(), SigningKey::Symmetric(previous)],
        accepted: vec![
            ("new public key", pair.verifying_key().to_text()),
            ("old secret", previous_text),
        ],
        refused: vec![],
    });
    signers
}

/// Who checks a scheme for a receiver holding `key`: a `whsec_` secret on an
/// `ed25519` delivery is the old key of a change of kind, checked by the
/// Standard Webhooks libraries.
fn verifiers(scheme: &SignatureScheme, key: &str) -> Vec<Verifier> {
    if scheme.is_asymmetric() && !key.starts_with("whpk_") {
        return Verifier::for_scheme("standard", None);
    }
    let options = match scheme {
        SignatureScheme::Hmac(custom) => Some(
            serde_json::from_value::<HmacOptions>(serde_json::to_value(custom).expect("json"))
                .expect("hmac options"),
        ),
        _ => None,
    };
    Verifier::for_scheme(scheme.name(), options.as_ref())
}

/// Every signature this crate makes, as cases: each scheme accepted with the
/// keys that must verify, and refused for one changed body byte, a key that
/// must not verify, or (where signed) a stale timestamp.
fn cases() -> Vec<Case> {
    let now = unix_now();
    let msg_id = "msg_2f1XNkQ6q2lCtCwtp1zNaQb8cP3";
    // Non-ASCII on purpose: every verifier must sign the same UTF-8 bytes.
    let body = r#"{"type":"invoice.paid","data":{"customer":"Zoë Ångström","note":"🦀 ✓"}}"#;
    let mut cases = Vec::new();
    for signer in signers() {
        let scheme = &signer.scheme;
        let sign = |timestamp: i64| {
            scheme
                .headers(&signer.keys, msg_id, timestamp, body.as_bytes())
                .expect("keys given")
        };
        let fresh = sign(now);
        let timestamped = !matches!(
            scheme,
            SignatureScheme::Github | SignatureScheme::Shopify | SignatureScheme::Hmac(_)
        );
        let label = match scheme {
            SignatureScheme::Hmac(custom) => format!("hmac {}", serde_json::json!(custom)),
            _ => scheme.name().to_owned(),
        };
        for (which, key) in &signer.accepted {
            for verifier in verifiers(scheme, key) {
                let case = Case::new(
                    format!("{label}, {which}"),
                    verifier,
                    key,
                    fresh.clone(),
                    body,
                );
                cases.push(case.with_one_byte_changed());
                if timestamped {
                    let mut stale = case.clone().expecting(Expect::Reject, "an hour old");
                    stale.headers = sign(now - 3600);
                    cases.push(stale);
                }
                cases.push(case);
            }
        }
        for (which, key) in &signer.refused {
            for verifier in verifiers(scheme, key) {
                cases.push(
                    Case::new(
                        format!("{label}, {which}"),
                        verifier,
                        key,
                        fresh.clone(),
                        body,
                    )
                    .expecting(Expect::Reject, "refused"),
                );
            }
        }
    }
    cases
}

#[test]
fn provider_libraries_accept_herald_signatures_and_refuse_tampered_ones() {
    let cases = cases();
    let report = match verify(&cases) {
        Ok(report) => report,
        Err(why) => {
            return skip_or_fail("Python or Node with the providers' packages", &why)
                .unwrap_or_default()
        }
    };
    eprintln!("{report}");
    assert!(
        report.mismatches().is_empty(),
        "the providers' verifiers disagree with herald-signature:\n{report}"
    );
}
