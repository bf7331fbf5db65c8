//! An endpoint's signature scheme on the wire (`signatureScheme`,
//! `signatureOptions`), and the rules that keep it consistent with the
//! endpoint's key and custom headers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::{EndpointHeaders, EndpointSecret, ValidationError};
use herald_signature::{Algorithm, Encoding, HmacScheme, SignatureScheme};
use herald_store::Endpoint;

/// How deliveries to an endpoint are signed.
///
/// `standard` (the default) is Standard Webhooks with the endpoint's `whsec_`
/// secret, what Svix sends. `ed25519` is Standard Webhooks' asymmetric `v1a`
/// form: Herald keeps the key pair's secret half and shows only the `whpk_`
/// public key. `stripe`, `github`, `shopify` and `slack` write the header those
/// providers write, keyed with the full `whsec_…` text, so receivers can reuse
/// those providers' verifiers. `hmac` writes a header configured in
/// `signatureOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureSchemeName {
    Standard,
    Ed25519,
    Stripe,
    Github,
    Shopify,
    Slack,
    Hmac,
}

/// The hash under a configurable HMAC header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha384,
    Sha512,
    /// For receivers (and senders) that still use HMAC-SHA1; prefer SHA-256.
    Sha1,
}

impl From<HmacAlgorithm> for Algorithm {
    fn from(algorithm: HmacAlgorithm) -> Self {
        match algorithm {
            HmacAlgorithm::Sha256 => Algorithm::Sha256,
            HmacAlgorithm::Sha384 => Algorithm::Sha384,
            HmacAlgorithm::Sha512 => Algorithm::Sha512,
            HmacAlgorithm::Sha1 => Algorithm::Sha1,
        }
    }
}

impl From<HmacEncoding> for Encoding {
    fn from(encoding: HmacEncoding) -> Self {
        match encoding {
            HmacEncoding::Hex => Encoding::Hex,
            HmacEncoding::Base64 => Encoding::Base64,
        }
    }
}

/// How a configurable HMAC header writes the tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacEncoding {
    #[default]
    Hex,
    Base64,
}

/// The settings of the `hmac` scheme: `<header>: <encoding(HMAC-<algorithm>(whsec_… text, body))>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureOptions {
    /// The header the signature is sent in; an HTTP token that Herald does not
    /// set itself.
    #[schema(example = "X-Acme-Signature", max_length = 256)]
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    #[serde(default)]
    pub encoding: HmacEncoding,
}

/// The wire form of a scheme: its name, and its options when it is `hmac`.
pub(crate) fn to_wire(scheme: &SignatureScheme) -> (SignatureSchemeName, Option<SignatureOptions>) {
    let name = match scheme {
        SignatureScheme::Standard => SignatureSchemeName::Standard,
        SignatureScheme::Ed25519 => SignatureSchemeName::Ed25519,
        SignatureScheme::Stripe => SignatureSchemeName::Stripe,
        SignatureScheme::Github => SignatureSchemeName::Github,
        SignatureScheme::Shopify => SignatureSchemeName::Shopify,
        SignatureScheme::Slack => SignatureSchemeName::Slack,
        SignatureScheme::Hmac(hmac) => {
            let options = SignatureOptions {
                header: hmac.header().to_owned(),
                algorithm: match hmac.algorithm() {
                    Algorithm::Sha256 => HmacAlgorithm::Sha256,
                    Algorithm::Sha384 => HmacAlgorithm::Sha384,
                    Algorithm::Sha512 => HmacAlgorithm::Sha512,
                    Algorithm::Sha1 => HmacAlgorithm::Sha1,
                },
                encoding: match hmac.encoding() {
                    Encoding::Hex => HmacEncoding::Hex,
                    Encoding::Base64 => HmacEncoding::Base64,
                },
            };
            return (SignatureSchemeName::Hmac, Some(options));
        }
    };
    (name, None)
}

/// The `hmac` scheme an options object describes.
fn hmac_scheme(options: &SignatureOptions) -> Result<HmacScheme, ValidationError> {
    let at_header = |msg: String| {
        ValidationError::new("signatureOptions", msg).at(&["body", "signatureOptions", "header"])
    };
    let algorithm = options.algorithm.into();
    let encoding = options.encoding.into();
    // The rules of custom headers apply: a token, not one Herald sets itself.
    let as_custom = [(options.header.clone(), "x".to_owned())]
        .into_iter()
        .collect();
    EndpointHeaders::parse(as_custom).map_err(|e| at_header(e.msg))?;
    if options.header.eq_ignore_ascii_case(EVENT_TYPE_HEADER) {
        return Err(at_header(format!(
            "header '{}' is set by Herald and cannot carry a signature",
            options.header
        )));
    }
    HmacScheme::new(options.header.clone(), algorithm, encoding)
        .map_err(|e| at_header(e.to_string()))
}

/// The event type header every delivery carries (the worker's
/// `EVENT_TYPE_HEADER`; the API does not depend on the worker crate).
const EVENT_TYPE_HEADER: &str = "x-herald-event-type";

/// The scheme a name stands for on its own; `None` for `hmac`, which needs options.
fn plain(name: SignatureSchemeName) -> Option<SignatureScheme> {
    Some(match name {
        SignatureSchemeName::Standard => SignatureScheme::Standard,
        SignatureSchemeName::Ed25519 => SignatureScheme::Ed25519,
        SignatureSchemeName::Stripe => SignatureScheme::Stripe,
        SignatureSchemeName::Github => SignatureScheme::Github,
        SignatureSchemeName::Shopify => SignatureScheme::Shopify,
        SignatureSchemeName::Slack => SignatureScheme::Slack,
        SignatureSchemeName::Hmac => return None,
    })
}

/// A requested change of scheme: the name and options as sent, either of
/// which may be absent (`options` is `Some(None)` for an explicit null).
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemeChange {
    pub name: Option<SignatureSchemeName>,
    pub options: Option<Option<SignatureOptions>>,
}

impl SchemeChange {
    /// The scheme after the change, given the current one (`standard` for a new
    /// endpoint). Options without `hmac`, or `hmac` without options, are refused.
    pub(crate) fn resolve(
        &self,
        current: &SignatureScheme,
    ) -> Result<SignatureScheme, ValidationError> {
        let options_refused = || {
            ValidationError::new(
                "signatureOptions",
                "only the hmac signature scheme takes options",
            )
        };
        let options = match &self.options {
            Some(Some(options)) => Some(hmac_scheme(options)?),
            Some(None) | None => None,
        };
        Ok(match (self.name, options) {
            (None, None) => {
                if matches!(self.options, Some(None)) && matches!(current, SignatureScheme::Hmac(_))
                {
                    return Err(ValidationError::new(
                        "signatureOptions",
                        "the hmac signature scheme needs its options",
                    ));
                }
                current.clone()
            }
            (None, Some(hmac)) => match current {
                SignatureScheme::Hmac(_) => SignatureScheme::Hmac(hmac),
                _ => return Err(options_refused()),
            },
            (Some(SignatureSchemeName::Hmac), Some(hmac)) => SignatureScheme::Hmac(hmac),
            (Some(_), Some(_)) => return Err(options_refused()),
            (Some(name), None) => match (plain(name), current, &self.options) {
                (Some(scheme), _, _) => scheme,
                // Naming the current hmac scheme again keeps its options.
                (None, SignatureScheme::Hmac(hmac), None) => SignatureScheme::Hmac(hmac.clone()),
                (None, _, _) => {
                    return Err(ValidationError::new(
                        "signatureOptions",
                        "the hmac signature scheme needs options: {\"header\": …}",
                    ))
                }
            },
        })
    }
}

/// Refuses custom headers that the scheme writes itself: the signature would
/// replace them, or they the signature. `field` names what the request changed.
pub(crate) fn check_header_collisions(
    scheme: &SignatureScheme,
    headers: &EndpointHeaders,
    field: &str,
) -> Result<(), ValidationError> {
    for name in scheme.header_names() {
        if let Some(custom) = headers
            .as_map()
            .keys()
            .find(|custom| custom.eq_ignore_ascii_case(name))
        {
            let error = ValidationError::new(
                field,
                format!(
                    "custom header '{custom}' collides with the '{name}' header of the '{}' \
                     signature scheme",
                    scheme.name()
                ),
            );
            return Err(match field {
                "headers" => error.at(&["body", "headers", custom]),
                _ => error,
            });
        }
    }
    Ok(())
}

/// Refuses a key whose kind does not fit the scheme: an `ed25519` endpoint
/// signs with a `whsk_` key pair, every other scheme with a `whsec_` secret.
pub(crate) fn check_key_kind(
    scheme: &SignatureScheme,
    secret: &EndpointSecret,
    loc: &[&str],
) -> Result<(), ValidationError> {
    let field = loc.last().copied().unwrap_or("secret");
    match (scheme.is_asymmetric(), secret.is_asymmetric()) {
        (true, false) => Err(ValidationError::new(
            field,
            "the ed25519 signature scheme signs with an Ed25519 key: 'whsk_' followed by base64",
        )
        .at(loc)),
        (false, true) => Err(ValidationError::new(
            field,
            format!(
                "a 'whsk_' key pair signs only with the ed25519 signature scheme, not '{}'",
                scheme.name()
            ),
        )
        .at(loc)),
        _ => Ok(()),
    }
}

/// Applies a new scheme to an endpoint. When the kind of key changes (to or
/// from `ed25519`), a fresh key of the new kind becomes current and the old one
/// keeps signing for `grace`, so Standard Webhooks receivers (which take `v1`
/// and `v1a` entries alike) keep verifying through the change.
pub(crate) fn apply_scheme(
    endpoint: &mut Endpoint,
    scheme: SignatureScheme,
    grace: chrono::Duration,
) {
    if scheme.is_asymmetric() != endpoint.secrets.current.is_asymmetric() {
        let next = EndpointSecret::generate_for(scheme.is_asymmetric());
        endpoint.secrets.rotate(next, grace, herald_store::now());
    }
    endpoint.signature_scheme = scheme;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(header: &str) -> SignatureOptions {
        SignatureOptions {
            header: header.to_owned(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: HmacEncoding::Base64,
        }
    }

    fn change(
        name: Option<SignatureSchemeName>,
        options: Option<Option<SignatureOptions>>,
    ) -> SchemeChange {
        SchemeChange { name, options }
    }

    #[test]
    fn names_and_options_resolve_to_schemes_and_back() {
        let standard = SignatureScheme::Standard;
        let hmac = change(
            Some(SignatureSchemeName::Hmac),
            Some(Some(options("X-Sig"))),
        )
        .resolve(&standard)
        .expect("hmac with options");
        assert_eq!(
            to_wire(&hmac),
            (SignatureSchemeName::Hmac, Some(options("X-Sig")))
        );
        for name in [
            SignatureSchemeName::Standard,
            SignatureSchemeName::Ed25519,
            SignatureSchemeName::Stripe,
            SignatureSchemeName::Github,
            SignatureSchemeName::Shopify,
            SignatureSchemeName::Slack,
        ] {
            let scheme = change(Some(name), None).resolve(&hmac).expect("plain name");
            assert_eq!(to_wire(&scheme), (name, None));
        }
        // Nothing asked keeps the scheme; options alone change an hmac scheme.
        assert_eq!(change(None, None).resolve(&hmac).expect("kept"), hmac);
        let renamed = change(None, Some(Some(options("X-Other"))))
            .resolve(&hmac)
            .expect("new options");
        assert_eq!(to_wire(&renamed).1.expect("options").header, "X-Other");
        assert_eq!(
            change(Some(SignatureSchemeName::Hmac), None)
                .resolve(&hmac)
                .expect("kept options"),
            hmac
        );
    }

    #[test]
    fn options_and_schemes_that_do_not_fit_are_refused() {
        let standard = SignatureScheme::Standard;
        let refused = [
            change(Some(SignatureSchemeName::Hmac), None),
            change(Some(SignatureSchemeName::Hmac), Some(None)),
            change(
                Some(SignatureSchemeName::Stripe),
                Some(Some(options("X-Sig"))),
            ),
            change(None, Some(Some(options("X-Sig")))),
            change(
                Some(SignatureSchemeName::Hmac),
                Some(Some(options("X Sig"))),
            ),
            change(
                Some(SignatureSchemeName::Hmac),
                Some(Some(options("webhook-signature"))),
            ),
            change(
                Some(SignatureSchemeName::Hmac),
                Some(Some(options("Content-Type"))),
            ),
            change(
                Some(SignatureSchemeName::Hmac),
                Some(Some(options("X-Herald-Event-Type"))),
            ),
        ];
        for request in refused {
            let error = request.resolve(&standard).expect_err("refused");
            assert_eq!(error.loc[1], "signatureOptions", "{request:?}");
        }
        let hmac = SignatureScheme::Hmac(
            HmacScheme::new("X-Sig", Algorithm::Sha256, Encoding::Hex).expect("valid"),
        );
        assert!(change(None, Some(None)).resolve(&hmac).is_err());
    }

    #[test]
    fn custom_headers_may_not_collide_with_the_scheme() {
        let headers = EndpointHeaders::parse(
            [("stripe-signature".to_owned(), "x".to_owned())]
                .into_iter()
                .collect(),
        )
        .expect("valid custom header");
        let error = check_header_collisions(&SignatureScheme::Stripe, &headers, "headers")
            .expect_err("collides");
        assert_eq!(error.loc, ["body", "headers", "stripe-signature"]);
        assert!(check_header_collisions(&SignatureScheme::Github, &headers, "headers").is_ok());
        let error = check_header_collisions(&SignatureScheme::Stripe, &headers, "signatureScheme")
            .expect_err("collides");
        assert_eq!(error.loc, ["body", "signatureScheme"]);
    }

    #[test]
    fn keys_must_fit_the_scheme() {
        let symmetric = EndpointSecret::generate();
        let pair = EndpointSecret::generate_asymmetric();
        let loc = ["body", "secret"];
        assert!(check_key_kind(&SignatureScheme::Ed25519, &pair, &loc).is_ok());
        assert!(check_key_kind(&SignatureScheme::Stripe, &symmetric, &loc).is_ok());
        assert!(check_key_kind(&SignatureScheme::Ed25519, &symmetric, &loc).is_err());
        let error = check_key_kind(&SignatureScheme::Standard, &pair, &loc).expect_err("refused");
        assert_eq!(error.loc, ["body", "secret"]);
    }
}
