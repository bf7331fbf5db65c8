//! Validated values: once constructed, a value is known to be acceptable, so
//! later layers never re-check it. Each `parse` returns a [`ValidationError`]
//! that the API turns into a Svix-shaped 422 item.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::RESERVED_PREFIXES;

/// Why a value was refused, in the shape of one Svix `ValidationErrorItem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `["body", "uid"]`.
    pub loc: Vec<String>,
    pub msg: String,
    /// Svix's error type, e.g. `value_error`.
    pub kind: &'static str,
}

impl ValidationError {
    pub fn new(field: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec!["body".to_owned(), field.to_owned()],
            msg: msg.into(),
            kind: "value_error",
        }
    }

    /// The same error, reported under another location (query, path, nested field).
    pub fn at(mut self, loc: &[&str]) -> Self {
        self.loc = loc.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks the `^[a-zA-Z0-9\-_.]+$` pattern and length bounds the Svix spec puts
/// on uids, event-type names, channels and feature flags.
fn check_name(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    if !s.chars().all(is_name_char) {
        return Err(ValidationError::new(
            field,
            "may only contain letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// Refuses `.` and `..` for a name used as a path segment (`/app/{uid}`,
/// `/event-type/{name}`): clients resolve those away before sending (RFC 3986
/// §5.2.4), so an object so named could never be reached. Checked on input
/// only: rows stored before the rule still load.
fn check_path_segment(field: &str, s: &str) -> Result<(), ValidationError> {
    if s == "." || s == ".." {
        return Err(ValidationError::new(field, "must not be '.' or '..'"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        name_type!($(#[$doc])* $name, $field, $max, false);
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, path_segment) => {
        name_type!($(#[$doc])* $name, $field, $max, true);
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, $segment:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            /// Validates a name given as input.
            pub fn parse(s: impl Into<String>) -> Result<Self, ValidationError> {
                let s = Self::from_stored(s)?;
                if $segment {
                    check_path_segment($field, &s.0)?;
                }
                Ok(s)
            }

            /// Accepts a stored name by the rules it was stored under.
            pub fn from_stored(s: impl Into<String>) -> Result<Self, ValidationError> {
                let s = s.into();
                check_name($field, &s, $max)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A name for an event type, e.g. `invoice.paid`.
    EventTypeName, "name", 256, path_segment
);
name_type!(
    /// A message channel an endpoint can subscribe to.
    ChannelName, "channels", 128
);
name_type!(
    /// A feature flag that gates an event type.
    FeatureFlag, "featureFlag", 256
);

/// A user-chosen unique identifier of an application or endpoint.
///
/// It may not start with an id prefix (`app_`, `ep_`, …): paths accept "id or
/// uid", and a uid that looks like an id would make that lookup ambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uid(String);

impl Uid {
    pub const MAX_LEN: usize = 256;

    /// Validates a uid given as input.
    pub fn parse(s: impl Into<String>) -> Result<Self, ValidationError> {
        let s = Self::from_stored(s)?;
        check_path_segment("uid", &s.0)?;
        Ok(s)
    }

    /// Accepts a stored uid by the rules it was stored under.
    pub fn from_stored(s: impl Into<String>) -> Result<Self, ValidationError> {
        let s = s.into();
        check_name("uid", &s, Self::MAX_LEN)?;
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| s.starts_with(**p)) {
            return Err(ValidationError::new(
                "uid",
                format!("must not start with the reserved id prefix '{prefix}'"),
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A path segment that names an object either by its id or by its uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdOrUid(String);

impl IdOrUid {
    /// Accepts anything that could be an id or a uid; the lookup decides which.
    pub fn parse(param: &str, s: &str) -> Result<Self, ValidationError> {
        check_name(param, s, Uid::MAX_LEN).map_err(|e| e.at(&["path", param]))?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdOrUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An endpoint's URL: absolute, `http` or `https`, with a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Longer URLs are refused: well past any real receiver's URL, and short
    /// enough that proxies and HTTP libraries on the way accept it.
    pub const MAX_LEN: usize = 2_048;
    /// The limit of earlier versions, which stored URLs may still reach.
    const MAX_STORED_LEN: usize = 65_536;

    /// Validates a URL given as input.
    pub fn parse(s: impl Into<String>) -> Result<Self, ValidationError> {
        Self::parse_up_to(s.into(), Self::MAX_LEN)
    }

    /// Accepts a stored URL by the rules it was stored under.
    pub fn from_stored(s: impl Into<String>) -> Result<Self, ValidationError> {
        Self::parse_up_to(s.into(), Self::MAX_STORED_LEN)
    }

    fn parse_up_to(s: String, max_len: usize) -> Result<Self, ValidationError> {
        if s.len() > max_len {
            return Err(ValidationError::new(
                "url",
                format!("must be at most {max_len} characters long"),
            ));
        }
        // The URL parser silently strips tabs and line breaks; refuse them instead
        // of storing a URL that differs from the one that was validated.
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ValidationError::new(
                "url",
                "must not contain whitespace or control characters",
            ));
        }
        let parsed = url::Url::parse(&s)
            .map_err(|e| ValidationError::new("url", format!("is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ValidationError::new(
                "url",
                "must use the http or https scheme",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ValidationError::new("url", "must have a host"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form string labels on applications and endpoints.
pub type Metadata = BTreeMap<String, String>;

/// Custom headers an endpoint wants on every delivery.
///
/// Names are HTTP tokens (RFC 9110 §5.1); headers Herald sets itself (signatures,
/// framing, content type) cannot be overridden, or a receiver could not trust them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointHeaders(BTreeMap<String, String>);

/// Headers whose values are secrets: stored and sent, but never shown back.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "user-agent",
];

impl EndpointHeaders {
    pub const MAX_HEADERS: usize = 100;

    pub fn parse(map: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if map.len() > Self::MAX_HEADERS {
            return Err(ValidationError::new(
                "headers",
                format!("at most {} headers are allowed", Self::MAX_HEADERS),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, value) in &map {
            Self::check(name, value)?;
            // HTTP header names are case-insensitive (RFC 9110 §5.1).
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(ValidationError::new(
                    "headers",
                    format!("header '{name}' is given twice"),
                )
                .at(&["body", "headers", name]));
            }
        }
        Ok(Self(map))
    }

    fn check(name: &str, value: &str) -> Result<(), ValidationError> {
        let field =
            |msg: String| ValidationError::new("headers", msg).at(&["body", "headers", name]);
        let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > 256 || !name.chars().all(is_token_char) {
            return Err(field(format!("'{name}' is not a valid header name")));
        }
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str())
            || lower.starts_with("webhook-")
            || lower.starts_with("svix-")
        {
            return Err(field(format!(
                "header '{name}' is set by Herald and cannot be overridden"
            )));
        }
        // Field values may not hold control characters other than tab (RFC 9110 §5.5).
        if value.len() > 4096 || value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(field(format!(
                "value of '{name}' must be at most 4096 characters with no control characters"
            )));
        }
        Ok(())
    }

    /// Applies a patch: `Some(value)` sets a header, `None` removes it.
    pub fn patched(
        &self,
        patch: BTreeMap<String, Option<String>>,
    ) -> Result<Self, ValidationError> {
        let mut next = self.0.clone();
        for (name, value) in patch {
            match value {
                Some(value) => {
                    next.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
                    next.insert(name, value);
                }
                None => {
                    next.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
                }
            }
        }
        Self::parse(next)
    }

    pub fn is_sensitive(name: &str) -> bool {
        SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
    }

    /// The headers safe to show, and the names of those withheld.
    pub fn redacted(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let mut shown = BTreeMap::new();
        let mut sensitive = Vec::new();
        for (name, value) in &self.0 {
            if Self::is_sensitive(name) {
                sensitive.push(name.clone());
            } else {
                shown.insert(name.clone(), value.clone());
            }
        }
        (shown, sensitive)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rejects_reserved_prefixes_and_bad_characters() {
        assert!(Uid::parse("customer-42").is_ok());
        assert!(Uid::parse("app_123").is_err());
        assert!(Uid::parse("has space").is_err());
        assert!(Uid::parse("x".repeat(257)).is_err());
        assert!(Uid::parse("").is_err());
    }

    #[test]
    fn names_that_a_path_would_resolve_away_are_refused() {
        for name in [".", ".."] {
            assert!(Uid::parse(name).is_err(), "uid {name}");
            assert!(EventTypeName::parse(name).is_err(), "event type {name}");
        }
        assert!(Uid::parse("...").is_ok());
        assert!(Uid::parse(".hidden").is_ok());
        // Only input is refused: what an older version stored still loads,
        // and channels, never path segments, keep every name.
        assert!(Uid::from_stored("..").is_ok());
        assert!(EventTypeName::from_stored(".").is_ok());
        assert!(ChannelName::parse(".").is_ok());
    }

    #[test]
    fn endpoint_url_requires_http_or_https_with_host() {
        assert!(EndpointUrl::parse("https://example.com/hook").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:9000/").is_ok());
        assert!(EndpointUrl::parse("ftp://example.com").is_err());
        assert!(EndpointUrl::parse("not a url").is_err());
        assert!(EndpointUrl::parse("javascript:alert(1)").is_err());
        assert!(EndpointUrl::parse("https://example.com/a\r\nX-Injected: 1").is_err());
        assert!(EndpointUrl::parse("https://example.com/\ta").is_err());
    }

    #[test]
    fn endpoint_url_is_at_most_2048_characters() {
        let url = |len: usize| format!("https://example.com/{}", "a".repeat(len - 20));
        assert_eq!(url(2_048).len(), 2_048);
        assert!(EndpointUrl::parse(url(2_048)).is_ok());
        assert!(EndpointUrl::parse(url(2_049)).is_err());
        assert!(EndpointUrl::from_stored(url(3_000)).is_ok());
    }

    #[test]
    fn headers_refuse_overrides_of_herald_headers_and_redact_secrets() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(EndpointHeaders::parse(map(&[("webhook-signature", "x")])).is_err());
        assert!(EndpointHeaders::parse(map(&[("Content-Type", "x")])).is_err());
        assert!(EndpointHeaders::parse(map(&[("X-Ok", "a\r\nb")])).is_err());
        let headers =
            EndpointHeaders::parse(map(&[("X-Team", "a"), ("Authorization", "Bearer s")])).unwrap();
        let (shown, sensitive) = headers.redacted();
        assert_eq!(shown.len(), 1);
        assert_eq!(sensitive, vec!["Authorization".to_owned()]);
    }

    #[test]
    fn header_patch_sets_and_removes_case_insensitively() {
        let headers = EndpointHeaders::parse(BTreeMap::from([
            ("X-A".to_owned(), "1".to_owned()),
            ("X-B".to_owned(), "2".to_owned()),
        ]))
        .unwrap();
        let patched = headers
            .patched(BTreeMap::from([
                ("x-a".to_owned(), None),
                ("X-C".to_owned(), Some("3".to_owned())),
            ]))
            .unwrap();
        assert_eq!(
            patched.as_map().keys().collect::<Vec<_>>(),
            vec!["X-B", "X-C"]
        );
    }
}
