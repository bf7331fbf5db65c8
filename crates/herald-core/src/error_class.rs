//! Why a delivery attempt did not succeed: one vocabulary for the worker that
//! classifies an attempt, the attempt log that stores it, the event the stats
//! service counts it from, the API that reports it and the stats breakdown.
//!
//! Each class has a stable name ([`ErrorClass::as_str`]): that is the text in
//! the `message_attempt.error_class` column, the JSON string on the broker and
//! in the API, and the `outcome` metric label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an attempt did not succeed.
///
/// Serialized as its stable name (`"timeout"`, `"5xx"`, …). Reading a name
/// ([`ErrorClass::from_stored`], and deserializing) never fails: a name this
/// version does not know, written by another version or by hand, reads as
/// [`ErrorClass::Other`], so an attempt row or a queued event is never
/// unreadable because of its class. [`ErrorClass::parse`] is the strict form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The attempt did not finish within the timeout.
    Timeout,
    /// No usable connection: refused, reset, or closed before a response.
    Connect,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed (bad certificate, not TLS, ...).
    Tls,
    /// The SSRF guard refused the destination.
    Blocked,
    /// A 3xx response; redirects are not followed.
    Http3xx,
    /// A 4xx response.
    Http4xx,
    /// A 5xx response.
    Http5xx,
    /// The request could not be built (no secret, a header value HTTP cannot
    /// carry); retrying will not help.
    Invalid,
    /// Anything else, including a status outside 200–599.
    Other,
}

impl ErrorClass {
    /// Every class.
    pub const ALL: [ErrorClass; 10] = [
        Self::Timeout,
        Self::Connect,
        Self::Dns,
        Self::Tls,
        Self::Blocked,
        Self::Http3xx,
        Self::Http4xx,
        Self::Http5xx,
        Self::Invalid,
        Self::Other,
    ];

    /// The classes the stats breakdown counts separately, in its order: every
    /// class but [`ErrorClass::Invalid`], which it counts as `other` (see
    /// [`ErrorClass::breakdown`]).
    pub const BREAKDOWN: [ErrorClass; 9] = [
        Self::Timeout,
        Self::Connect,
        Self::Dns,
        Self::Tls,
        Self::Blocked,
        Self::Http3xx,
        Self::Http4xx,
        Self::Http5xx,
        Self::Other,
    ];

    /// The stable name used in the attempt log, on the event bus, in the API,
    /// in stats and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Blocked => "blocked",
            Self::Http3xx => "3xx",
            Self::Http4xx => "4xx",
            Self::Http5xx => "5xx",
            Self::Invalid => "invalid",
            Self::Other => "other",
        }
    }

    /// The class named `name` exactly ([`ErrorClass::as_str`]), `None` for a
    /// name this version does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "timeout" => Self::Timeout,
            "connect" => Self::Connect,
            "dns" => Self::Dns,
            "tls" => Self::Tls,
            "blocked" => Self::Blocked,
            "3xx" => Self::Http3xx,
            "4xx" => Self::Http4xx,
            "5xx" => Self::Http5xx,
            "invalid" => Self::Invalid,
            "other" => Self::Other,
            _ => return None,
        })
    }

    /// The class of a stored or received name: [`ErrorClass::parse`], with a
    /// name this version does not know read as [`ErrorClass::Other`] rather
    /// than refused, so one odd value cannot make a row or event unreadable.
    pub fn from_stored(name: &str) -> Self {
        Self::parse(name).unwrap_or(Self::Other)
    }

    /// The class of a response status, `None` for 2xx.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            300..=399 => Some(Self::Http3xx),
            400..=499 => Some(Self::Http4xx),
            500..=599 => Some(Self::Http5xx),
            _ => Some(Self::Other),
        }
    }

    /// The stats breakdown's counter this class is counted under: itself,
    /// except [`ErrorClass::Invalid`], counted as [`ErrorClass::Other`]. Always
    /// one of [`ErrorClass::BREAKDOWN`].
    pub fn breakdown(self) -> Self {
        match self {
            Self::Invalid => Self::Other,
            class => class,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Strict: an unknown name is an error (unlike deserializing).
impl FromStr for ErrorClass {
    type Err = UnknownErrorClass;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownErrorClass(name.to_owned()))
    }
}

/// A name that is not one of [`ErrorClass::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error class {0:?}")]
pub struct UnknownErrorClass(pub String);

impl Serialize for ErrorClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Lenient, like [`ErrorClass::from_stored`]: an unknown name is
/// [`ErrorClass::Other`], so events already queued by another version decode.
impl<'de> Deserialize<'de> for ErrorClass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;

        impl serde::de::Visitor<'_> for Name {
            type Value = ErrorClass;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error class name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ErrorClass, E> {
                Ok(ErrorClass::from_stored(name))
            }
        }

        deserializer.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_round_trip() {
        let names = [
            "timeout", "connect", "dns", "tls", "blocked", "3xx", "4xx", "5xx", "invalid", "other",
        ];
        for (class, name) in ErrorClass::ALL.into_iter().zip(names) {
            assert_eq!(class.as_str(), name);
            assert_eq!(class.to_string(), name);
            assert_eq!(ErrorClass::parse(name), Some(class));
            assert_eq!(ErrorClass::from_stored(name), class);
            assert_eq!(name.parse::<ErrorClass>(), Ok(class));
        }
    }

    #[test]
    fn unknown_names_are_refused_strictly_and_read_as_other() {
        for unknown in ["", "TIMEOUT", "2xx", "expired", " 5xx"] {
            assert_eq!(ErrorClass::parse(unknown), None);
            assert!(unknown.parse::<ErrorClass>().is_err());
            assert_eq!(ErrorClass::from_stored(unknown), ErrorClass::Other);
        }
    }

    #[test]
    fn serde_uses_the_name_and_reads_unknown_names_as_other() {
        for class in ErrorClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<ErrorClass>(&json).unwrap(), class);
        }
        // An owned string (an escape forces one) decodes too.
        assert_eq!(
            serde_json::from_str::<ErrorClass>(r#""5\u0078x""#).unwrap(),
            ErrorClass::Http5xx
        );
        assert_eq!(
            serde_json::from_str::<ErrorClass>(r#""expired""#).unwrap(),
            ErrorClass::Other
        );
        assert_eq!(
            serde_json::from_str::<Option<ErrorClass>>("null").unwrap(),
            None
        );
        assert!(serde_json::from_str::<ErrorClass>("5").is_err());
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(ErrorClass::from_status(200), None);
        assert_eq!(ErrorClass::from_status(204), None);
        assert_eq!(ErrorClass::from_status(299), None);
        assert_eq!(ErrorClass::from_status(302), Some(ErrorClass::Http3xx));
        assert_eq!(ErrorClass::from_status(410), Some(ErrorClass::Http4xx));
        assert_eq!(ErrorClass::from_status(503), Some(ErrorClass::Http5xx));
        assert_eq!(ErrorClass::from_status(600), Some(ErrorClass::Other));
        assert_eq!(ErrorClass::from_status(0), Some(ErrorClass::Other));
        assert_eq!(ErrorClass::from_status(199), Some(ErrorClass::Other));
    }

    #[test]
    fn the_breakdown_folds_invalid_into_other() {
        assert_eq!(ErrorClass::Invalid.breakdown(), ErrorClass::Other);
        for class in ErrorClass::ALL {
            assert!(ErrorClass::BREAKDOWN.contains(&class.breakdown()));
        }
        for class in ErrorClass::BREAKDOWN {
            assert_eq!(class.breakdown(), class);
        }
    }
}
