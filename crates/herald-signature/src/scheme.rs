//! The per-endpoint choice of signature scheme (`signatureScheme`) and the headers
//! each one adds to a delivery.

use crate::custom::HmacScheme;
use crate::secret::provider_key;
use crate::{github, shopify, slack, standard, stripe, SignatureError};

/// How an endpoint's deliveries are signed.
///
/// With serde it reads and writes as `"standardWebhooks"`, `"stripe"`, `"github"`,
/// `"shopify"`, `"slack"`, or `{"hmac": {"header": "X-Signature", "algorithm":
/// "sha256", "encoding": "hex"}}` (algorithm and encoding default as shown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub enum SignatureScheme {
    /// [Standard Webhooks](https://www.standardwebhooks.com), the default.
    #[default]
    StandardWebhooks,
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

impl SignatureScheme {
    /// The scheme's wire name, as used in `signatureScheme`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standardWebhooks",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Hmac(_) => "hmac",
        }
    }

    /// The `(name, value)` headers that sign one delivery.
    ///
    /// `secrets` are raw key bytes ([`crate::parse_secret`]) of every secret valid
    /// now, current first. Standard Webhooks and Stripe sign with each of them, so
    /// receivers keep verifying through a rotation; the other schemes have room for
    /// one signature and sign with the first. Provider schemes key the HMAC with the
    /// secret's text form ([`provider_key`]) so the providers' libraries accept it.
    pub fn headers<S: AsRef<[u8]>>(
        &self,
        secrets: &[S],
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, SignatureError> {
        let current = || {
            secrets
                .first()
                .map(|secret| provider_key(secret.as_ref()))
                .ok_or(SignatureError::NoSecret)
        };
        let pair = |name: &str, value: String| (name.to_owned(), value);
        Ok(match self {
            Self::StandardWebhooks => return standard::headers(secrets, msg_id, timestamp, body),
            Self::Stripe => {
                let keys: Vec<Vec<u8>> = secrets
                    .iter()
                    .map(|secret| provider_key(secret.as_ref()))
                    .collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{format_secret, parse_secret, Algorithm, Encoding};

    const ID: &str = "msg_2f1XexampleId";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = "{\"type\":\"invoice.paid\",\"name\":\"Zoë 🦀\"}".as_bytes();

    fn secrets() -> [Vec<u8>; 2] {
        [
            parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("current"),
            parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("previous"),
        ]
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} missing from {headers:?}"))
    }

    fn custom() -> HmacScheme {
        HmacScheme::new("X-Acme-Signature", Algorithm::Sha512, Encoding::Base64)
            .expect("valid header")
    }

    #[test]
    fn every_scheme_round_trips_through_its_verifier() {
        let [current, previous] = secrets();
        let key = format_secret(&current).into_bytes();
        for scheme in [
            SignatureScheme::StandardWebhooks,
            SignatureScheme::Stripe,
            SignatureScheme::Github,
            SignatureScheme::Shopify,
            SignatureScheme::Slack,
            SignatureScheme::Hmac(custom()),
        ] {
            let headers = scheme
                .headers(&[&current, &previous], ID, NOW, BODY)
                .expect("secrets given");
            let verified = match &scheme {
                SignatureScheme::StandardWebhooks => {
                    let found = standard::WebhookHeaders::from_lookup(|name| {
                        headers
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.as_str())
                    })
                    .expect("all headers");
                    standard::verify_at(&current, &found, BODY, standard::DEFAULT_TOLERANCE, NOW)
                }
                SignatureScheme::Stripe => stripe::verify_at(
                    &key,
                    get(&headers, stripe::HEADER),
                    BODY,
                    stripe::DEFAULT_TOLERANCE,
                    NOW,
                ),
                SignatureScheme::Github => {
                    github::verify(&key, get(&headers, github::HEADER), BODY)
                }
                SignatureScheme::Shopify => {
                    shopify::verify(&key, get(&headers, shopify::HEADER), BODY)
                }
                SignatureScheme::Slack => slack::verify_at(
                    &key,
                    get(&headers, slack::SIGNATURE_HEADER),
                    get(&headers, slack::TIMESTAMP_HEADER),
                    BODY,
                    slack::DEFAULT_TOLERANCE,
                    NOW,
                ),
                SignatureScheme::Hmac(custom) => {
                    custom.verify(&key, get(&headers, custom.header()), BODY)
                }
            };
            assert_eq!(verified, Ok(()), "{}", scheme.name());
        }
    }

    #[test]
    fn stripe_signs_with_every_secret_and_the_others_with_the_current_one() {
        let [current, previous] = secrets();
        let old_key = format_secret(&previous).into_bytes();
        let both = [&current, &previous];
        let stripe = SignatureScheme::Stripe
            .headers(&both, ID, NOW, BODY)
            .expect("secrets");
        assert_eq!(
            stripe::verify_at(
                &old_key,
                get(&stripe, stripe::HEADER),
                BODY,
                stripe::DEFAULT_TOLERANCE,
                NOW
            ),
            Ok(())
        );
        let github = SignatureScheme::Github
            .headers(&both, ID, NOW, BODY)
            .expect("secrets");
        assert_eq!(
            github::verify(&old_key, get(&github, github::HEADER), BODY),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn signing_without_secrets_is_refused_by_every_scheme() {
        let none: [&[u8]; 0] = [];
        for scheme in [
            SignatureScheme::StandardWebhooks,
            SignatureScheme::Stripe,
            SignatureScheme::Github,
            SignatureScheme::Shopify,
            SignatureScheme::Slack,
            SignatureScheme::Hmac(custom()),
        ] {
            assert_eq!(
                scheme.headers(&none, ID, NOW, BODY),
                Err(SignatureError::NoSecret)
            );
        }
    }

    #[test]
    fn slack_headers_carry_the_signed_timestamp() {
        let [current, _] = secrets();
        let headers = SignatureScheme::Slack
            .headers(&[&current], ID, NOW, BODY)
            .expect("secret");
        assert_eq!(get(&headers, slack::TIMESTAMP_HEADER), "1700000000");
        assert_eq!(headers.len(), 2);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn schemes_read_and_write_their_camel_case_names() {
        for (scheme, json) in [
            (SignatureScheme::StandardWebhooks, r#""standardWebhooks""#),
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
            r#""standard_webhooks""#,
        ] {
            assert!(
                serde_json::from_str::<SignatureScheme>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
