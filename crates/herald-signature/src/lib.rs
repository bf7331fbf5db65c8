//! Signing and verification of Herald's webhook deliveries, small enough for
//! receivers to depend on by itself.
//!
//! The default scheme is [Standard Webhooks](https://www.standardwebhooks.com)
//! ([`standard`]), byte-for-byte what Svix and the Standard Webhooks libraries
//! produce and accept. An endpoint may instead choose a provider-style scheme
//! ([`SignatureScheme`]) so that its receiver can reuse a verifier it already has:
//! [`stripe`], [`github`], [`shopify`], [`slack`] or a configurable [`custom`] HMAC
//! header.
//!
//! # Which key signs what
//!
//! An endpoint secret is shown as `whsec_<base64>` ([`parse_secret`],
//! [`format_secret`]). Standard Webhooks keys the HMAC with the decoded bytes, as
//! the spec says. Provider libraries instead key it with the UTF-8 bytes of the
//! secret *string* they are given, so for provider schemes
//! [`SignatureScheme::headers`] keys the HMAC with the text `whsec_<base64>`
//! ([`provider_key`]): a receiver pastes the secret Herald shows into Stripe's,
//! GitHub's, Shopify's or Slack's verifier unchanged.
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
