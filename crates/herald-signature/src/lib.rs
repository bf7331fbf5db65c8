//! Signing and verification of Herald's webhook deliveries, small enough for
//! receivers to depend on by itself: it depends on no other Herald crate, and with `default-features = false` not on
//! serde either (the `serde` feature only derives `Serialize`/`Deserialize` for
//! [`SignatureScheme`] and its parts, which the sender stores).
//!
//! The default scheme is [Standard Webhooks](https://www.standardwebhooks.com)
//! ([`standard`]), byte-for-byte what Svix and the Standard Webhooks libraries
//! produce and accept: HMAC-SHA256 `v1` signatures, or Ed25519 `v1a` ones
//! ([`ed25519`]) for endpoints that chose asymmetric keys. An endpoint may instead
//! choose a provider-style scheme ([`SignatureScheme`]) so that its receiver can
//! reuse a verifier it already has: [`stripe`], [`github`], [`shopify`],
//! [`slack`] or a configurable [`custom`] HMAC header.
//!
//! | scheme | headers | receiver's key |
//! |---|---|---|
//! | `standard` | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` (and `svix-*` twins) | `whsec_…` |
//! | `ed25519` | the same, `webhook-signature: v1a,<base64>` | `whpk_…` |
//! | `stripe` | `Stripe-Signature: t=<ts>,v1=<hex>` | `whsec_…` |
//! | `github` | `X-Hub-Signature-256: sha256=<hex>` | `whsec_…` |
//! | `shopify` | `X-Shopify-Hmac-SHA256: <base64>` | `whsec_…` |
//! | `slack` | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `whsec_…` |
//! | `hmac` | a header you name: hex or base64 HMAC-SHA256/384/512 of the body | `whsec_…` |
//!
//! # Verifying a delivery
//!
//! Parse the key Herald shows for the endpoint once ([`VerifyingKey::parse`]),
//! then for each request hand [`SignatureScheme::verify`] a header lookup and the
//! **raw body bytes**, before parsing them (re-serialised JSON does not match).
//! The lookup gets lowercase names; with an `http::HeaderMap` it is
//! `|name| headers.get(name).and_then(|v| v.to_str().ok())`. Tests and replays
//! pass the clock in with [`SignatureScheme::verify_at`]:
//!
//! ```
//! use std::collections::HashMap;
//! use herald_signature::{standard::DEFAULT_TOLERANCE, SignatureScheme, VerifyingKey};
//!
//! let key = VerifyingKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"test": 2432232314}"#;
//! let headers = HashMap::from([(
//!     "stripe-signature",
//!     "t=1614265330,v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964",
//! )]);
//! let lookup = |name: &str| headers.get(name).copied();
//!
//! // A live receiver calls `verify`, which reads the clock; this delivery is from 2021.
//! SignatureScheme::Stripe.verify_at(&key, lookup, body, DEFAULT_TOLERANCE, 1614265330)?;
//! # Ok::<(), herald_signature::SignatureError>(())
//! ```
//!
//! Standard Webhooks receivers can also call [`standard`] directly, here with the
//! spec's first test vector:
//!
//! ```
//! use herald_signature::{parse_secret, standard};
//!
//! let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let body = br#"{"test": 2432232314}"#;
//! let signature = standard::sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//!
//! let headers = standard::WebhookHeaders {
//!     id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
//!     timestamp: "1614265330",
//!     signature: &signature,
//! };
//! standard::verify_at(&secret, &headers, body, standard::DEFAULT_TOLERANCE, 1614265330)?;
//! # Ok::<(), herald_signature::SignatureError>(())
//! ```
//!
//! An Ed25519 endpoint's receiver holds only the public key, so it cannot sign
//! deliveries itself:
//!
//! ```
//! use herald_signature::ed25519::PublicKey;
//! use herald_signature::standard::{self, WebhookHeaders, DEFAULT_TOLERANCE};
//!
//! let public_key = PublicKey::parse("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")?;
//! let headers = WebhookHeaders::from_lookup(|name| match name {
//!     "webhook-id" => Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     "webhook-timestamp" => Some("1614265330"),
//!     "webhook-signature" => Some(
//!         "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==",
//!     ),
//!     _ => None,
//! })?;
//! let body = br#"{"test": 2432232314}"#;
//! standard::verify_asymmetric_at(&public_key, &headers, body, DEFAULT_TOLERANCE, 1614265330)?;
//!
//! // One changed byte and it fails.
//! let tampered = br#"{"test": 2432232315}"#;
//! let refused = standard::verify_asymmetric_at(&public_key, &headers, tampered, DEFAULT_TOLERANCE, 1614265330);
//! assert_eq!(refused, Err(herald_signature::SignatureError::NoMatchingSignature));
//! # Ok::<(), herald_signature::SignatureError>(())
//! ```
//!
//! # Keys
//!
//! - `whsec_<base64>`: an endpoint's symmetric secret, 24–64 random bytes
//!   ([`parse_secret`], [`format_secret`]). Sender and receiver both hold it.
//! - `whsk_<base64>`: an Ed25519 secret key ([`ed25519::SecretKey`]). Only Herald
//!   holds it; [`VerifyingKey::parse`] refuses it with
//!   [`SignatureError::UnsuitableKey`].
//! - `whpk_<base64>`: the matching public key ([`ed25519::PublicKey`]), what an
//!   `ed25519` endpoint's receiver verifies with.
//!
//! A receiver only ever holds `whsec_…` or `whpk_…`: [`VerifyingKey`].
//!
//! Standard Webhooks keys the HMAC with the decoded bytes of a `whsec_` secret,
//! as the spec says. Provider libraries instead key it with the UTF-8 bytes of
//! the secret *string* they are given, so for provider schemes
//! [`SignatureScheme::headers`] keys the HMAC with the text `whsec_<base64>`
//! ([`provider_key`]): a receiver pastes the secret Herald shows into Stripe's,
//! GitHub's, Shopify's or Slack's verifier unchanged.
//!
//! # What verification promises
//!
//! - **Replay window.** Timestamped schemes (`standard`, `ed25519`, `stripe`,
//!   `slack`) refuse a timestamp more than the tolerance away from the
//!   receiver's clock in *either* direction ([`standard::DEFAULT_TOLERANCE`]: 300 s).
//!   `github`, `shopify` and `hmac` sign no timestamp.
//! - **Constant time.** Every HMAC comparison is constant-time, and Ed25519
//!   signatures are checked with strict verification (RFC 8032 plus refusing
//!   non-canonical encodings).
//! - **Rotation.** A header may carry several signatures (one per valid key
//!   during a rotation, plus any junk); any one valid signature passes.
//! - **Typed refusals.** Every failure is a [`SignatureError`] naming the header
//!   at fault where there is one. Answer each with a 4xx (`400` or `401`) and do
//!   not process the body; Herald retries, so a refusal caused by the receiver's
//!   own misconfiguration heals once it is fixed.
//! - **Deduplication is the receiver's.** A delivery may arrive more than once
//!   (a retry after a timeout, a resend). Deduplicate on `webhook-id`, the
//!   message id, which is the same on every retry and sent with every scheme.

mod error;
mod key;
mod mac;
mod scheme;
mod secret;
mod time;

pub mod custom;
pub mod ed25519;
pub mod github;
pub mod shopify;
pub mod slack;
pub mod standard;
pub mod stripe;

pub use custom::{Algorithm, Encoding, HmacScheme};
pub use error::SignatureError;
pub use key::{SigningKey, VerifyingKey};
pub use scheme::SignatureScheme;
pub use secret::{format_secret, parse_secret, provider_key, SECRET_PREFIX};
pub use time::unix_now;
