//! Inbound webhooks: what a tenant's *source* is (the provider that sends to
//! `POST /ingest/{source_id}`, with its secret and settings) and the pure
//! rules applied to what arrives there — verifying the provider's signature
//! with `herald-signature`, answering Slack's URL check, and reading the
//! event type and the provider's event id the message is stored under.
//!
//! | provider | signature | event type | event id |
//! |---|---|---|---|
//! | `stripe` | `Stripe-Signature` | body `type` | body `id` |
//! | `github` | `X-Hub-Signature-256` | `X-GitHub-Event` + `.` + body `action` | `X-GitHub-Delivery` |
//! | `shopify` | `X-Shopify-Hmac-SHA256` | `X-Shopify-Topic`, `/` → `.` | `X-Shopify-Webhook-Id` |
//! | `slack` | `X-Slack-Signature` | body `event.type` (`event_callback`), else `type` | body `event_id` |
//! | `standard` | `webhook-signature` | a JSON pointer or header | `webhook-id` |
//! | `hmac` | a header you name | a JSON pointer or header | optional pointer or header |

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_signature::{
    github, parse_secret, shopify, slack, standard, stripe, HmacScheme, SignatureError,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{EventTypeName, Uid, ValidationError};

/// GitHub's event name header.
pub const GITHUB_EVENT: &str = "x-github-event";
/// GitHub's delivery id header, the same on every redelivery.
pub const GITHUB_DELIVERY: &str = "x-github-delivery";
/// Shopify's topic header (`orders/create`).
pub const SHOPIFY_TOPIC: &str = "x-shopify-topic";
/// Shopify's webhook id header, the same on every retry.
pub const SHOPIFY_WEBHOOK_ID: &str = "x-shopify-webhook-id";

/// The default tolerance of timestamped signatures, as Stripe's, Slack's and
/// the Standard Webhooks libraries have it.
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;
/// The largest tolerance a source may set: a day.
pub const MAX_TOLERANCE_SECONDS: u32 = 86_400;

/// Who sends to a source, which decides how its requests are verified and
/// where their event type and event id are read:
///
/// - `stripe`: `Stripe-Signature`; the body's `type` and `id`.
/// - `github`: `X-Hub-Signature-256`; `X-GitHub-Event` and the body's
///   `action` (`issues.opened`), `X-GitHub-Delivery`.
/// - `shopify`: `X-Shopify-Hmac-SHA256`; `X-Shopify-Topic` with `/` made
///   `.` (`orders.create`), `X-Shopify-Webhook-Id`.
/// - `slack`: `X-Slack-Signature`; the body's `event.type` for an
///   `event_callback` (else its `type`), `event_id`. Its URL verification is
///   answered.
/// - `standard`: Standard Webhooks (`webhook-*` or `svix-*` headers, what
///   Svix sends); `eventType` says where the type is (default the body's
///   `/type`); `webhook-id`.
/// - `hmac`: a header named in `hmac`; `eventType` (default `/type`) and an
///   optional `eventId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = SourceProvider))]
pub enum ProviderName {
    Stripe,
    Github,
    Shopify,
    Slack,
    Standard,
    Hmac,
}

impl ProviderName {
    pub const ALL: [Self; 6] = [
        Self::Stripe,
        Self::Github,
        Self::Shopify,
        Self::Slack,
        Self::Standard,
        Self::Hmac,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
            Self::Standard => "standard",
            Self::Hmac => "hmac",
        }
    }

    /// Whether the provider signs a timestamp, so a tolerance applies.
    pub fn is_timestamped(self) -> bool {
        matches!(self, Self::Stripe | Self::Slack | Self::Standard)
    }

    /// Whether the provider makes the secret (the tenant copies it from the
    /// provider's dashboard), so Herald cannot generate one.
    pub fn issues_secret(self) -> bool {
        matches!(self, Self::Stripe | Self::Shopify | Self::Slack)
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a value is read from in a request: a JSON pointer into the body
/// (RFC 6901, `/type`, `/data/kind`) or a header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Locator {
    Pointer(String),
    Header(String),
}

impl Locator {
    /// Longest pointer or header name accepted.
    pub const MAX_LEN: usize = 256;

    /// `/type`: where Standard Webhooks senders (Svix among them) put it.
    pub fn default_event_type() -> Self {
        Self::Pointer("/type".to_owned())
    }

    /// Checks a locator given as input; `field` names it in the error.
    pub fn parse(
        pointer: Option<String>,
        header: Option<String>,
        field: &str,
    ) -> Result<Self, ValidationError> {
        let invalid = |msg: &str| ValidationError::new(field, msg);
        match (pointer, header) {
            (Some(pointer), None) => {
                if pointer.len() > Self::MAX_LEN || !pointer.starts_with('/') {
                    return Err(invalid(
                        "pointer must be a JSON pointer such as '/type', at most 256 characters",
                    ));
                }
                Ok(Self::Pointer(pointer))
            }
            (None, Some(header)) => {
                if header.len() > Self::MAX_LEN || !is_token(&header) {
                    return Err(invalid("header must be an HTTP header name"));
                }
                Ok(Self::Header(header))
            }
            _ => Err(invalid("give exactly one of pointer and header")),
        }
    }

    /// The text at this place of the request; `None` when absent or not a
    /// string.
    fn read<'a>(
        &self,
        header: &impl Fn(&str) -> Option<&'a str>,
        body: &'a Value,
    ) -> Option<&'a str> {
        match self {
            Self::Pointer(pointer) => body.pointer(pointer)?.as_str(),
            Self::Header(name) => header(&name.to_ascii_lowercase()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Pointer(pointer) => format!("the body at {pointer}"),
            Self::Header(name) => format!("header {name}"),
        }
    }
}

/// Whether `name` is an HTTP field name (RFC 9110 §5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A configurable HMAC signature, for providers with their own convention:
/// `<header>: <prefix><encoding(HMAC-<algorithm>(secret, body))>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HmacSource {
    pub signature: HmacScheme,
    /// Text before the tag in the header's value, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub event_type: Locator,
    /// Where the provider's event id is; without one nothing is deduplicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Locator>,
}

/// A source's provider with its settings, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    Stripe,
    Github,
    Shopify,
    Slack,
    /// Standard Webhooks (what Svix sends), its event type where `event_type`
    /// says.
    Standard {
        event_type: Locator,
    },
    Hmac(HmacSource),
}

/// What an accepted request is stored as: its event type, and the
/// `eventId` its message is deduplicated on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub event_type: EventTypeName,
    pub event_id: Option<Uid>,
}

/// Why a verified request cannot become a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The body is not a JSON object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("no event type: {0} is missing or not a string")]
    MissingEventType(String),
    #[error("event type '{name}' cannot be used: {why}")]
    InvalidEventType { name: String, why: String },
    #[error("no event id: {0} is missing or not a string")]
    MissingEventId(String),
}

impl SourceKind {
    pub fn name(&self) -> ProviderName {
        match self {
            Self::Stripe => ProviderName::Stripe,
            Self::Github => ProviderName::Github,
            Self::Shopify => ProviderName::Shopify,
            Self::Slack => ProviderName::Slack,
            Self::Standard { .. } => ProviderName::Standard,
            Self::Hmac(_) => ProviderName::Hmac,
        }
    }

    /// Verifies a request's signature as of `now` (Unix seconds), as the
    /// provider's own libraries do. `header` looks a header up by its
    /// lowercase name; `body` is the raw body. Providers key the HMAC with
    /// the secret's text, Standard Webhooks with its decoded bytes.
    pub fn verify<'a>(
        &self,
        secret: &SourceSecret,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        tolerance: Duration,
        now: i64,
    ) -> Result<(), SignatureError> {
        let key = secret.as_str().as_bytes();
        let require = |name: &str| {
            let lower = name.to_ascii_lowercase();
            header(&lower).ok_or(SignatureError::MissingHeader(lower))
        };
        match self {
            Self::Stripe => stripe::verify_at(key, require(stripe::HEADER)?, body, tolerance, now),
            Self::Github => github::verify(key, require(github::HEADER)?, body),
            Self::Shopify => shopify::verify(key, require(shopify::HEADER)?, body),
            Self::Slack => slack::verify_at(
                key,
                require(slack::SIGNATURE_HEADER)?,
                require(slack::TIMESTAMP_HEADER)?,
                body,
                tolerance,
                now,
            ),
            Self::Standard { .. } => {
                let secret = parse_secret(secret.as_str())?;
                let headers = standard::WebhookHeaders::from_lookup(&header)?;
                standard::verify_at(&secret, &headers, body, tolerance, now)
            }
            Self::Hmac(hmac) => {
                let name = hmac.signature.header();
                let value = require(name)?;
                let value = match &hmac.prefix {
                    Some(prefix) => {
                        value.trim().strip_prefix(prefix.as_str()).ok_or_else(|| {
                            SignatureError::MalformedHeader(name.to_ascii_lowercase())
                        })?
                    }
                    None => value,
                };
                hmac.signature.verify(key, value, body)
            }
        }
    }

    /// Slack's URL verification (`{"type": "url_verification", "challenge":
    /// …}`), sent when an app's request URL is set: the challenge to answer
    /// with, and nothing is stored.
    pub fn challenge<'a>(&self, body: &'a Value) -> Option<&'a str> {
        match self {
            Self::Slack if body.get("type")?.as_str()? == "url_verification" => {
                body.get("challenge")?.as_str()
            }
            _ => None,
        }
    }

    /// Reads the event type and event id of a verified request whose body
    /// parsed as `body`.
    pub fn inbound<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &'a Value,
    ) -> Result<Inbound, InboundError> {
        if !body.is_object() {
            return Err(InboundError::NotAnObject);
        }
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let provider = self.name();
        let (event_type, event_id): (String, Option<&str>) = match self {
            Self::Stripe => (
                required_type(field("type"), "the body's type")?.to_owned(),
                Some(required_id(field("id"), "the body's id")?),
            ),
            Self::Github => {
                let event = required_type(header(GITHUB_EVENT), "header X-GitHub-Event")?;
                let event_type = match field("action") {
                    Some(action) => format!("{event}.{action}"),
                    None => event.to_owned(),
                };
                let id = required_id(header(GITHUB_DELIVERY), "header X-GitHub-Delivery")?;
                (event_type, Some(id))
            }
            Self::Shopify => {
                let topic = required_type(header(SHOPIFY_TOPIC), "header X-Shopify-Topic")?;
                let id = required_id(header(SHOPIFY_WEBHOOK_ID), "header X-Shopify-Webhook-Id")?;
                (topic.replace('/', "."), Some(id))
            }
            Self::Slack => {
                let kind = required_type(field("type"), "the body's type")?;
                if kind == "event_callback" {
                    let inner = body.pointer("/event/type").and_then(Value::as_str);
                    let inner = required_type(inner, "the body's event.type")?;
                    let id = required_id(field("event_id"), "the body's event_id")?;
                    (inner.to_owned(), Some(id))
                } else {
                    (kind.to_owned(), field("event_id"))
                }
            }
            Self::Standard { event_type } => {
                let kind = required_type(event_type.read(&header, body), &event_type.describe())?;
                let id = header(standard::WEBHOOK_ID).or_else(|| header(standard::SVIX_ID));
                let id = required_id(id, "header webhook-id")?;
                (kind.to_owned(), Some(id))
            }
            Self::Hmac(hmac) => {
                let kind = required_type(
                    hmac.event_type.read(&header, body),
                    &hmac.event_type.describe(),
                )?;
                let id = match &hmac.event_id {
                    Some(locator) => Some(required_id(
                        locator.read(&header, body),
                        &locator.describe(),
                    )?),
                    None => None,
                };
                (kind.to_owned(), id)
            }
        };
        let event_type = EventTypeName::parse(event_type.as_str()).map_err(|e| {
            InboundError::InvalidEventType {
                name: event_type.clone(),
                why: e.msg,
            }
        })?;
        Ok(Inbound {
            event_type,
            event_id: event_id.map(|id| inbound_event_id(provider, id)),
        })
    }
}

fn required_type<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str, InboundError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| InboundError::MissingEventType(what.to_owned()))
}

fn required_id<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str, InboundError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| InboundError::MissingEventId(what.to_owned()))
}

/// The `eventId` a message from `provider` with the provider's event id `id`
/// is stored under: `{provider}-{id}` (`stripe-evt_1NG8…`,
/// `github-72d3162e-…`), so a redelivery of the same event finds it taken.
/// The prefix keeps provider ids that start like Herald ids (Stripe's `evt_`,
/// Svix's `msg_`) from being refused. An id that would not make a valid uid
/// (other characters, too long) is replaced by its SHA-256:
/// `{provider}-sha256-{hex}`.
pub fn inbound_event_id(provider: ProviderName, id: &str) -> Uid {
    let plain = format!("{provider}-{id}");
    Uid::parse(plain).unwrap_or_else(|_| {
        let digest = hex::encode(Sha256::digest(id.as_bytes()));
        Uid::from_stored(format!("{provider}-sha256-{digest}"))
            .unwrap_or_else(|_| unreachable!("a provider name and hex digits make a valid uid"))
    })
}

/// The secret a source verifies with, as the provider gave it (Stripe's
/// `whsec_…`, Slack's signing secret, a GitHub webhook's secret, a Standard
/// Webhooks `whsec_` key). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceSecret(String);

impl SourceSecret {
    pub const MAX_LEN: usize = 1024;

    /// Checks a secret given for a source of `provider`: 1 to 1024
    /// characters without control characters, and for `standard` a key
    /// Standard Webhooks can use (`whsec_` and base64).
    pub fn parse(provider: ProviderName, s: impl Into<String>) -> Result<Self, ValidationError> {
        let s = s.into();
        let invalid = |msg: &str| ValidationError::new("secret", msg);
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(invalid("must be 1 to 1024 characters long"));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        if provider == ProviderName::Standard && parse_secret(&s).is_err() {
            return Err(invalid(
                "must be a Standard Webhooks secret: 'whsec_' followed by base64",
            ));
        }
        Ok(Self(s))
    }

    /// A stored secret, as it was accepted.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// A fresh `whsec_` secret of 24 random bytes, for providers where the
    /// tenant chooses the secret (GitHub, Standard Webhooks, `hmac`).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("whsec_{}", STANDARD.encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SourceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use herald_signature::{Algorithm, Encoding};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn lookup<'a>(headers: &'a HashMap<String, String>) -> impl Fn(&str) -> Option<&'a str> {
        move |name| headers.get(name).map(String::as_str)
    }

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
            .collect()
    }

    fn hmac_source(prefix: Option<&str>) -> SourceKind {
        SourceKind::Hmac(HmacSource {
            signature: HmacScheme::new("X-Sig", Algorithm::Sha512, Encoding::Base64).unwrap(),
            prefix: prefix.map(str::to_owned),
            event_type: Locator::Header("X-Event".into()),
            event_id: Some(Locator::Pointer("/meta/id".into())),
        })
    }

    #[test]
    fn each_provider_verifies_what_its_scheme_signs_and_nothing_else() {
        let body = br#"{"type":"invoice.paid","id":"evt_1"}"#;
        let text = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let secret = SourceSecret::parse(ProviderName::Standard, text).unwrap();
        let key = text.as_bytes();
        let stripe = headers(&[(
            "Stripe-Signature",
            &stripe::header(&[key], NOW, body).unwrap(),
        )]);
        let github = headers(&[("X-Hub-Signature-256", &github::sign(key, body))]);
        let shopify = headers(&[("X-Shopify-Hmac-SHA256", &shopify::sign(key, body))]);
        let slack = headers(&[
            ("X-Slack-Signature", &slack::sign(key, NOW, body)),
            ("X-Slack-Request-Timestamp", &NOW.to_string()),
        ]);
        let bytes = parse_secret(text).unwrap();
        let standard = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            (
                "webhook-signature",
                &standard::sign(&bytes, "msg_1", NOW, body),
            ),
        ]);
        let hmac = hmac_source(Some("sha512="));
        let SourceKind::Hmac(settings) = &hmac else {
            unreachable!()
        };
        let custom = headers(&[(
            "X-Sig",
            &format!("sha512={}", settings.signature.sign(key, body)),
        )]);
        let cases = [
            (SourceKind::Stripe, stripe),
            (SourceKind::Github, github),
            (SourceKind::Shopify, shopify),
            (SourceKind::Slack, slack),
            (
                SourceKind::Standard {
                    event_type: Locator::default_event_type(),
                },
                standard,
            ),
            (hmac, custom),
        ];
        for (kind, signed) in &cases {
            let name = kind.name();
            assert_eq!(
                kind.verify(&secret, lookup(signed), body, TOLERANCE, NOW),
                Ok(()),
                "{name}"
            );
            let tampered = br#"{"type":"invoice.paid","id":"evt_2"}"#;
            assert_eq!(
                kind.verify(&secret, lookup(signed), tampered, TOLERANCE, NOW),
                Err(SignatureError::NoMatchingSignature),
                "{name}"
            );
            let other =
                SourceSecret::parse(name, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
            assert!(
                kind.verify(&other, lookup(signed), body, TOLERANCE, NOW)
                    .is_err(),
                "{name}"
            );
            let none = HashMap::new();
            assert!(
                matches!(
                    kind.verify(&secret, lookup(&none), body, TOLERANCE, NOW),
                    Err(SignatureError::MissingHeader(_))
                ),
                "{name}"
            );
            if name.is_timestamped() {
                let later = NOW + 301;
                assert_eq!(
                    kind.verify(&secret, lookup(signed), body, TOLERANCE, later),
                    Err(SignatureError::TimestampTooOld),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn an_hmac_prefix_must_be_there() {
        let kind = hmac_source(Some("sha512="));
        let SourceKind::Hmac(settings) = &kind else {
            unreachable!()
        };
        let secret = SourceSecret::parse(ProviderName::Hmac, "s3cret").unwrap();
        let body = b"{}";
        let bare = headers(&[("X-Sig", &settings.signature.sign(b"s3cret", body))]);
        assert_eq!(
            kind.verify(&secret, lookup(&bare), body, TOLERANCE, NOW),
            Err(SignatureError::MalformedHeader("x-sig".into()))
        );
    }

    #[test]
    fn event_types_and_ids_come_from_where_each_provider_puts_them() {
        let none = HashMap::new();
        let stripe = json!({"id": "evt_1NG8Du2eZvKYlo2CT", "type": "payment_intent.succeeded"});
        let got = SourceKind::Stripe.inbound(lookup(&none), &stripe).unwrap();
        assert_eq!(got.event_type.as_str(), "payment_intent.succeeded");
        assert_eq!(
            got.event_id.unwrap().as_str(),
            "stripe-evt_1NG8Du2eZvKYlo2CT"
        );

        let gh = headers(&[
            ("X-GitHub-Event", "issues"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        let got = SourceKind::Github
            .inbound(lookup(&gh), &json!({"action": "opened"}))
            .unwrap();
        assert_eq!(got.event_type.as_str(), "issues.opened");
        assert_eq!(
            got.event_id.unwrap().as_str(),
            "github-72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        let got = SourceKind::Github
            .inbound(lookup(&gh), &json!({"zen": "x"}))
            .unwrap();
        assert_eq!(got.event_type.as_str(), "issues");

        let shop = headers(&[
            ("X-Shopify-Topic", "orders/create"),
            (
                "X-Shopify-Webhook-Id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
        ]);
        let got = SourceKind::Shopify
            .inbound(lookup(&shop), &json!({"id": 1}))
            .unwrap();
        assert_eq!(got.event_type.as_str(), "orders.create");

        let callback = json!({"type": "event_callback", "event_id": "Ev0PV52K21", "event": {"type": "app_mention"}});
        let got = SourceKind::Slack.inbound(lookup(&none), &callback).unwrap();
        assert_eq!(got.event_type.as_str(), "app_mention");
        assert_eq!(got.event_id.unwrap().as_str(), "slack-Ev0PV52K21");
        let limited = json!({"type": "app_rate_limited", "team_id": "T1"});
        let got = SourceKind::Slack.inbound(lookup(&none), &limited).unwrap();
        assert_eq!(
            (got.event_type.as_str(), got.event_id),
            ("app_rate_limited", None)
        );

        let std_headers = headers(&[("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")]);
        let standard = SourceKind::Standard {
            event_type: Locator::Pointer("/data/kind".into()),
        };
        let got = standard
            .inbound(
                lookup(&std_headers),
                &json!({"data": {"kind": "user.created"}}),
            )
            .unwrap();
        assert_eq!(got.event_type.as_str(), "user.created");
        assert_eq!(
            got.event_id.unwrap().as_str(),
            "standard-msg_p5jXN8AQM9LWM0D4loKWxJek"
        );

        let custom = headers(&[("X-Event", "build.done")]);
        let got = hmac_source(None)
            .inbound(lookup(&custom), &json!({"meta": {"id": "42"}}))
            .unwrap();
        assert_eq!(got.event_type.as_str(), "build.done");
        assert_eq!(got.event_id.unwrap().as_str(), "hmac-42");
    }

    #[test]
    fn what_cannot_become_a_message_is_named() {
        let none = HashMap::new();
        assert_eq!(
            SourceKind::Stripe.inbound(lookup(&none), &json!([1])),
            Err(InboundError::NotAnObject)
        );
        assert!(matches!(
            SourceKind::Stripe.inbound(lookup(&none), &json!({"id": "evt_1"})),
            Err(InboundError::MissingEventType(_))
        ));
        assert!(matches!(
            SourceKind::Stripe.inbound(lookup(&none), &json!({"type": "a.b"})),
            Err(InboundError::MissingEventId(_))
        ));
        assert!(matches!(
            SourceKind::Stripe.inbound(lookup(&none), &json!({"type": "a b", "id": "evt_1"})),
            Err(InboundError::InvalidEventType { .. })
        ));
        assert!(matches!(
            SourceKind::Github.inbound(lookup(&none), &json!({})),
            Err(InboundError::MissingEventType(what)) if what.contains("X-GitHub-Event")
        ));
        assert!(matches!(
            hmac_source(None).inbound(lookup(&headers(&[("X-Event", "a")])), &json!({})),
            Err(InboundError::MissingEventId(what)) if what.contains("/meta/id")
        ));
    }

    #[test]
    fn slack_url_checks_are_recognised() {
        let check = json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
        assert_eq!(
            SourceKind::Slack.challenge(&check),
            Some("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
        );
        assert_eq!(SourceKind::Stripe.challenge(&check), None);
        assert_eq!(
            SourceKind::Slack.challenge(&json!({"type": "event_callback"})),
            None
        );
    }

    #[test]
    fn event_ids_that_make_no_uid_are_hashed() {
        let long = "x".repeat(300);
        let id = inbound_event_id(ProviderName::Hmac, &long);
        assert!(id.as_str().starts_with("hmac-sha256-"), "{id:?}");
        let spaced = inbound_event_id(ProviderName::Standard, "a b");
        assert!(spaced.as_str().starts_with("standard-sha256-"));
        assert_ne!(spaced, inbound_event_id(ProviderName::Standard, "a c"));
        assert_eq!(
            inbound_event_id(ProviderName::Stripe, "evt_1").as_str(),
            "stripe-evt_1"
        );
    }

    #[test]
    fn secrets_and_locators_are_checked() {
        assert!(SourceSecret::parse(ProviderName::Github, "").is_err());
        assert!(SourceSecret::parse(ProviderName::Github, "a\nb").is_err());
        assert!(SourceSecret::parse(ProviderName::Github, "my secret").is_ok());
        assert!(SourceSecret::parse(ProviderName::Standard, "not base64!").is_err());
        assert!(
            SourceSecret::parse(ProviderName::Standard, SourceSecret::generate().as_str()).is_ok()
        );
        assert_eq!(format!("{:?}", SourceSecret::generate()), "SourceSecret(…)");
        assert!(Locator::parse(Some("type".into()), None, "eventType").is_err());
        assert!(Locator::parse(None, Some("X Event".into()), "eventType").is_err());
        assert!(Locator::parse(Some("/a".into()), Some("X".into()), "eventType").is_err());
        assert!(Locator::parse(None, None, "eventType").is_err());
        assert_eq!(
            Locator::parse(None, Some("X-Event".into()), "eventType"),
            Ok(Locator::Header("X-Event".into()))
        );
    }

    #[test]
    fn kinds_read_and_write_as_the_store_keeps_them() {
        for kind in [
            SourceKind::Stripe,
            SourceKind::Standard {
                event_type: Locator::default_event_type(),
            },
            hmac_source(Some("sha256=")),
        ] {
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(serde_json::from_value::<SourceKind>(json).unwrap(), kind);
        }
        assert_eq!(
            serde_json::to_value(SourceKind::Github).unwrap(),
            json!("github")
        );
    }
}
