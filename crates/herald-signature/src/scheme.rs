//! The per-endpoint choice of signature scheme (`signatureScheme`) and the headers
//! each one adds to a delivery.

use std::time::Duration;

use crate::custom::HmacScheme;
use crate::secret::provider_key;
use crate::{
    github, shopify, slack, standard, stripe, unix_now, SignatureError, SigningKey, VerifyingKey,
};

/// How an endpoint's deliveries are signed.
///
/// With serde it reads and writes as `"standard"`, `"ed25519"`, `"stripe"`,
/// `"github"`, `"shopify"`, `"slack"`, or `{"hmac": {"header": "X-Signature",
/// "algorithm": "sha256", "encoding": "hex"}}` (algorithm and encoding default as
/// shown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub enum SignatureScheme {
    /// [Standard Webhooks](https://www.standardwebhooks.com) with a symmetric
    /// `whsec_` secret (`v1` signatures), the default.
    #[default]
    Standard,
    /// Standard Webhooks with an Ed25519 key pair (`v1a` signatures): receivers
    /// verify with the `whpk_` public key and cannot forge deliveries.
    Ed25519,
    /// `Stripe-Signature`, see [`stripe`].
    Stripe,
    /// `X-Hub-Signature-256`, see [`github`].
    Github,
    /// `X-Shopify-Hmac-SHA256`, see [`shopify`].
    Shopify,
    /// `X-Slack-Signature` and `X-Slack-Request-Timestamp`, see [`slack`].
    Slack,
    /// A configurable header, see [`HmacScheme`].
    Hmac(HmacScheme),
}

/// The Standard Webhooks headers, which both `standard` and `ed25519` write.
const STANDARD_HEADERS: [&str; 6] = [
    standard::WEBHOOK_ID,
    standard::WEBHOOK_TIMESTAMP,
    standard::WEBHOOK_SIGNATURE,
    standard::SVIX_ID,
    standard::SVIX_TIMESTAMP,
    standard::SVIX_SIGNATURE,
];

impl SignatureScheme {
    /// The scheme's wire name, as used in `signatureScheme`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Ed25519 => "ed25519",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Hmac(_) => "hmac",
        }
    }

    /// Whether the scheme signs with an Ed25519 key rather than a `whsec_` secret.
    pub fn is_asymmetric(&self) -> bool {
        matches!(self, Self::Ed25519)
    }

    /// The names of the headers the scheme writes, as it writes them.
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            Self::Standard | Self::Ed25519 => STANDARD_HEADERS.to_vec(),
            Self::Stripe => vec![stripe::HEADER],
            Self::Github => vec![github::HEADER],
            Self::Shopify => vec![shopify::HEADER],
            Self::Slack => vec![slack::SIGNATURE_HEADER, slack::TIMESTAMP_HEADER],
            Self::Hmac(scheme) => vec![scheme.header()],
        }
    }

    /// The `(name, value)` headers that sign one delivery.
    ///
    /// `keys` are every key valid now, current first. `standard` and `ed25519`
    /// write a Standard Webhooks header with one entry per key, `v1,` for a
    /// symmetric key and `v1a,` for an Ed25519 one, so receivers keep verifying
    /// through a rotation, even one that changes the kind of key. Stripe signs
    /// with every symmetric key; the other provider schemes have room for one
    /// signature and sign with the first symmetric key. Provider schemes key the
    /// HMAC with the secret's text form ([`provider_key`]) so the providers'
    /// libraries accept it. Fails with [`SignatureError::NoSecret`] when no key
    /// the scheme can use is given.
    pub fn headers(
        &self,
        keys: &[SigningKey],
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SignatureError> {
        let mut symmetric = keys.iter().filter_map(|key| match key {
            SigningKey::Symmetric(secret) => Some(provider_key(secret)),
            SigningKey::Asymmetric(_) => None,
        });
        let mut current = || symmetric.next().ok_or(SignatureError::NoSecret);
        let pair = |name: &str, value: String| (name.to_owned(), value);
        Ok(match self {
            Self::Standard | Self::Ed25519 => {
                return standard::headers(keys, msg_id, timestamp, body)
            }
            Self::Stripe => {
                let keys: Vec<Vec<u8>> = std::iter::from_fn(|| current().ok()).collect();
                vec![pair(
                    stripe::HEADER,
                    stripe::header(&keys, timestamp, body)?,
                )]
            }
            Self::Github => vec![pair(github::HEADER, github::sign(&current()?, body))],
            Self::Shopify => vec![pair(shopify::HEADER, shopify::sign(&current()?, body))],
            Self::Slack => vec![
                pair(
                    slack::SIGNATURE_HEADER,
                    slack::sign(&current()?, timestamp, body),
                ),
                pair(slack::TIMESTAMP_HEADER, timestamp.to_string()),
            ],
            Self::Hmac(scheme) => vec![pair(scheme.header(), scheme.sign(&current()?, body))],
        })
    }

    /// Whether a receiver can verify this scheme with `key`: `ed25519` needs the
    /// `whpk_` public key, the HMAC schemes the `whsec_` secret, and `standard`
    /// takes either (an endpoint mid-way through a change of key kind sends both
    /// entries).
    pub fn accepts(&self, key: &VerifyingKey) -> bool {
        match (self, key) {
            (Self::Standard, _) => true,
            (Self::Ed25519, key) => matches!(key, VerifyingKey::Asymmetric(_)),
            (_, key) => matches!(key, VerifyingKey::Symmetric(_)),
        }
    }

    /// Verifies a delivery signed with this scheme, as of `now` (Unix seconds).
    ///
    /// `header` looks a header up by its lowercase name (HTTP header names are
    /// case-insensitive; most header maps already look them up that way).
    /// Timestamped schemes (`standard`, `ed25519`, `stripe`, `slack`) refuse a
    /// timestamp further than `tolerance` from `now` in either direction. Every
    /// comparison of a symmetric signature is constant-time, and any one valid
    /// signature among several passes.
    pub fn verify_at<'a>(
        &self,
        key: &VerifyingKey,
        mut header: impl FnMut(&str) -> Option<&'a str>,
        body: &[u8],
        tolerance: Duration,
        now: i64,
    ) -> Result<(), SignatureError> {
        if !self.accepts(key) {
            return Err(SignatureError::UnsuitableKey);
        }
        let mut require = |name: &str| {
            let lower = name.to_ascii_lowercase();
            header(&lower).ok_or(SignatureError::MissingHeader(lower))
        };
        let hmac_key = match key {
            VerifyingKey::Symmetric(secret) => provider_key(secret),
            VerifyingKey::Asymmetric(_) => Vec::new(),
        };
        match self {
            Self::Standard | Self::Ed25519 => {
                let headers = standard::WebhookHeaders::from_lookup(header)?;
                standard::verify_key_at(key, &headers, body, tolerance, now)
            }
            Self::Stripe => {
                stripe::verify_at(&hmac_key, require(stripe::HEADER)?, body, tolerance, now)
            }
            Self::Github => github::verify(&hmac_key, require(github::HEADER)?, body),
            Self::Shopify => shopify::verify(&hmac_key, require(shopify::HEADER)?, body),
            Self::Slack => {
                let signature = require(slack::SIGNATURE_HEADER)?;
                let timestamp = require(slack::TIMESTAMP_HEADER)?;
                slack::verify_at(&hmac_key, signature, timestamp, body, tolerance, now)
            }
            Self::Hmac(scheme) => scheme.verify(&hmac_key, require(scheme.header())?, body),
        }
    }

    /// Verifies a delivery against the receiver's clock; see [`Self::verify_at`].
    pub fn verify<'a>(
        &self,
        key: &VerifyingKey,
        header: impl FnMut(&str) -> Option<&'a str>,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<(), SignatureError> {
        self.verify_at(key, header, body, tolerance, unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ed25519::SecretKey;
    use crate::{format_secret, parse_secret, Algorithm, Encoding};

    const ID: &str = "msg_2f1XexampleId";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = "{\"type\":\"invoice.paid\",\"name\":\"Zoë 🦀\"}".as_bytes();
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn secrets() -> [SigningKey; 2] {
        [
            SigningKey::Symmetric(
                parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("current"),
            ),
            SigningKey::Symmetric(
                parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("previous"),
            ),
        ]
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn custom() -> HmacScheme {
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha512, Encoding::Base64)
            .expect("valid header")
    }

    fn symmetric_schemes() -> [SignatureScheme; 6] {
        [
            SignatureScheme::Standard,
            SignatureScheme::Stripe,
            SignatureScheme::Github,
            SignatureScheme::Shopify,
            SignatureScheme::Slack,
            SignatureScheme::Hmac(custom()),
        ]
    }

    fn verify(
        scheme: &SignatureScheme,
        key: &VerifyingKey,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), SignatureError> {
        scheme.verify_at(key, |name| get(headers, name), body, TOLERANCE, NOW)
    }

    #[test]
    fn every_scheme_round_trips_through_its_verifier() {
        let [current, previous] = secrets();
        for scheme in symmetric_schemes() {
            let headers = scheme
                .headers(&[current.clone(), previous.clone()], ID, NOW, BODY)
                .expect("secrets given");
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, scheme.header_names(), "{}", scheme.name());
            assert_eq!(
                verify(&scheme, &current.verifying_key(), &headers, BODY),
                Ok(()),
                "{}",
                scheme.name()
            );
            assert_eq!(
                verify(&scheme, &current.verifying_key(), &headers, b"{}"),
                Err(SignatureError::NoMatchingSignature),
                "{}",
                scheme.name()
            );
        }
        let key = SigningKey::Asymmetric(SecretKey::generate());
        let headers = SignatureScheme::Ed25519
            .headers(std::slice::from_ref(&key), ID, NOW, BODY)
            .expect("key given");
        let public = key.verifying_key();
        assert_eq!(
            verify(&SignatureScheme::Ed25519, &public, &headers, BODY),
            Ok(())
        );
        assert_eq!(
            verify(&SignatureScheme::Standard, &public, &headers, BODY),
            Ok(())
        );
        assert!(get(&headers, "webhook-signature")
            .expect("signed")
            .starts_with("v1a,"));
    }

    #[test]
    fn stripe_signs_with_every_secret_and_the_others_with_the_current_one() {
        let [current, previous] = secrets();
        let both = [current, previous.clone()];
        let stripe = SignatureScheme::Stripe
            .headers(&both, ID, NOW, BODY)
            .expect("secrets");
        let old = previous.verifying_key();
        assert_eq!(
            verify(&SignatureScheme::Stripe, &old, &stripe, BODY),
            Ok(())
        );
        let github = SignatureScheme::Github
            .headers(&both, ID, NOW, BODY)
            .expect("secrets");
        assert_eq!(
            verify(&SignatureScheme::Github, &old, &github, BODY),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn a_change_of_key_kind_signs_with_both_during_the_grace_period() {
        let [old, _] = secrets();
        let new = SigningKey::Asymmetric(SecretKey::generate());
        let headers = SignatureScheme::Ed25519
            .headers(&[new.clone(), old.clone()], ID, NOW, BODY)
            .expect("keys");
        let signature = get(&headers, "webhook-signature").expect("signed");
        assert!(signature.starts_with("v1a,") && signature.contains(" v1,"));
        for key in [new.verifying_key(), old.verifying_key()] {
            assert_eq!(
                verify(&SignatureScheme::Standard, &key, &headers, BODY),
                Ok(())
            );
        }
        // Provider schemes skip Ed25519 keys and sign with the symmetric one.
        let github = SignatureScheme::Github
            .headers(&[new.clone(), old.clone()], ID, NOW, BODY)
            .expect("a symmetric key remains");
        assert_eq!(
            verify(
                &SignatureScheme::Github,
                &old.verifying_key(),
                &github,
                BODY
            ),
            Ok(())
        );
        assert_eq!(
            SignatureScheme::Github.headers(&[new], ID, NOW, BODY),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn signing_without_keys_is_refused_by_every_scheme() {
        for scheme in symmetric_schemes()
            .into_iter()
            .chain([SignatureScheme::Ed25519])
        {
            assert_eq!(
                scheme.headers(&[], ID, NOW, BODY),
                Err(SignatureError::NoSecret)
            );
        }
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused_before_anything_is_checked() {
        let [symmetric, _] = secrets();
        let public = SigningKey::Asymmetric(SecretKey::generate()).verifying_key();
        assert_eq!(
            verify(
                &SignatureScheme::Ed25519,
                &symmetric.verifying_key(),
                &[],
                BODY
            ),
            Err(SignatureError::UnsuitableKey)
        );
        for scheme in symmetric_schemes().into_iter().skip(1) {
            assert_eq!(
                verify(&scheme, &public, &[], BODY),
                Err(SignatureError::UnsuitableKey),
                "{}",
                scheme.name()
            );
        }
    }

    #[test]
    fn missing_headers_are_named() {
        let [key, _] = secrets();
        let key = key.verifying_key();
        for (scheme, missing) in [
            (SignatureScheme::Standard, "webhook-id"),
            (SignatureScheme::Stripe, "stripe-signature"),
            (SignatureScheme::Github, "x-hub-signature-256"),
            (SignatureScheme::Shopify, "x-shopify-hmac-sha256"),
            (SignatureScheme::Slack, "x-slack-signature"),
            (SignatureScheme::Hmac(custom()), "x-acme-signature"),
        ] {
            assert_eq!(
                verify(&scheme, &key, &[], BODY),
                Err(SignatureError::MissingHeader(missing.into())),
                "{}",
                scheme.name()
            );
        }
    }

    #[test]
    fn slack_headers_carry_the_signed_timestamp() {
        let [current, _] = secrets();
        let headers = SignatureScheme::Slack
            .headers(&[current], ID, NOW, BODY)
            .expect("secret");
        assert_eq!(get(&headers, slack::TIMESTAMP_HEADER), Some("1700000000"));
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn provider_schemes_key_the_hmac_with_the_secret_text() {
        let [current, _] = secrets();
        let SigningKey::Symmetric(bytes) = &current else {
            unreachable!("a symmetric secret")
        };
        let text = format_secret(bytes);
        let headers = SignatureScheme::Github
            .headers(std::slice::from_ref(&current), ID, NOW, BODY)
            .expect("secret");
        assert_eq!(
            github::verify(
                text.as_bytes(),
                get(&headers, github::HEADER).expect("signed"),
                BODY
            ),
            Ok(())
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn schemes_read_and_write_their_names() {
        for (scheme, json) in [
            (SignatureScheme::Standard, r#""standard""#),
            (SignatureScheme::Ed25519, r#""ed25519""#),
            (SignatureScheme::Stripe, r#""stripe""#),
            (SignatureScheme::Github, r#""github""#),
            (SignatureScheme::Shopify, r#""shopify""#),
            (SignatureScheme::Slack, r#""slack""#),
            (
                SignatureScheme::Hmac(custom()),
                r#"{"hmac":{"header":"X-Acme-Signature","algorithm":"sha512","encoding":"base64"}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&scheme).expect("serialises"), json);
            assert_eq!(
                serde_json::from_str::<SignatureScheme>(json).expect("parses"),
                scheme
            );
            assert!(json.contains(scheme.name()));
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn hmac_settings_default_and_are_checked_when_read() {
        let parsed: SignatureScheme =
            serde_json::from_str(r#"{"hmac":{"header":"X-Sig"}}"#).expect("defaults");
        assert_eq!(
            parsed,
            SignatureScheme::Hmac(
                HmacScheme::new("X-Sig", Algorithm::Sha256, Encoding::Hex).expect("valid")
            )
        );
        for bad in [
            r#"{"hmac":{"header":"X Sig"}}"#,
            r#"{"hmac":{"header":"X-Sig","algorithm":"md5"}}"#,
            r#"{"hmac":{"header":"X-Sig","encodign":"hex"}}"#,
            r#"{"hmac":{}}"#,
            r#""hmac""#,
            r#""standardWebhooks""#,
        ] {
            assert!(
                serde_json::from_str::<SignatureScheme>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
