//! Typed, prefixed, time-ordered identifiers (`app_…`, `ep_…`, `msg_…`, `atmpt_…`).
//!
//! The body is a millisecond KSUID (a timestamp with millisecond resolution and
//! random bits, base62, 27 chars), as Svix uses, so ids sort by creation time to
//! the millisecond and the store's keyset pagination can use them as iterators.
//! The id columns use the "C" collation so PostgreSQL sorts them bytewise.

use std::fmt;
use std::str::FromStr;

use svix_ksuid::{KsuidLike, KsuidMs};

/// Length of the base62 KSUID body that follows an id's prefix.
const KSUID_LEN: usize = 27;

/// Every prefix an id can carry; a `uid` chosen by a user may not start with one,
/// or a lookup by "id or uid" would become ambiguous.
pub const RESERVED_PREFIXES: &[&str] = &[
    "app_", "ep_", "msg_", "atmpt_", "tnt_", "key_", "evt_", "qtask_",
];

/// An id string that does not have the expected prefix or body.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} id")]
pub struct InvalidId {
    pub kind: &'static str,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id whose KSUID timestamp is now.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, KsuidMs::new(None, None)))
            }

            /// The smallest id created at `at`: a keyset bound for time filters.
            pub fn lower_bound_at(at: chrono::DateTime<chrono::Utc>) -> Self {
                // KSUID time starts at 2014-05-13 and spans 2^32 seconds.
                let seconds = at.timestamp().clamp(1_400_000_000, 1_400_000_000 + i64::from(u32::MAX));
                let ksuid = KsuidMs::from_seconds(Some(seconds), Some(&[0u8; 15]));
                Self(format!("{}{}", $prefix, ksuid))
            }

            /// Parses a string that must be an id of this kind.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let body = s.strip_prefix($prefix).ok_or(InvalidId { kind: $kind })?;
                if body.len() != KSUID_LEN || KsuidMs::from_str(body).is_err() {
                    return Err(InvalidId { kind: $kind });
                }
                Ok(Self(s.to_owned()))
            }

            /// Whether `s` looks like an id of this kind (as opposed to a uid).
            pub fn looks_like(s: &str) -> bool {
                s.starts_with($prefix)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

typed_id!(
    /// A tenant: one company using Herald, owner of everything else.
    TenantId, "tnt_", "tenant"
);
typed_id!(
    /// An API key of a tenant (the key's id, never its secret).
    ApiKeyId, "key_", "api key"
);
typed_id!(
    /// An application: one of a tenant's customers.
    ApplicationId, "app_", "application"
);
typed_id!(
    /// An endpoint: a URL of an application that receives webhooks.
    EndpointId, "ep_", "endpoint"
);
typed_id!(
    /// A message posted by a tenant for an application.
    MessageId, "msg_", "message"
);
typed_id!(
    /// One delivery attempt of a message to an endpoint.
    AttemptId, "atmpt_", "attempt"
);
typed_id!(
    /// A source of inbound webhooks: where a provider posts (`/ingest/{id}`).
    /// Sources have no uid, so `src_` need not be refused in uids.
    SourceId, "src_", "source"
);
typed_id!(
    /// A background task started by a request (an endpoint recovery).
    TaskId, "qtask_", "task"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_carry_their_prefix_and_parse_back() {
        let id = ApplicationId::new();
        assert!(id.as_str().starts_with("app_"));
        assert_eq!(id.as_str().len(), 4 + KSUID_LEN);
        assert_eq!(ApplicationId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn ids_of_another_kind_or_garbage_are_rejected() {
        let ep = EndpointId::new();
        assert!(ApplicationId::parse(ep.as_str()).is_err());
        assert!(ApplicationId::parse("app_short").is_err());
        assert!(ApplicationId::parse("app_!!!!!!!!!!!!!!!!!!!!!!!!!!!").is_err());
    }

    #[test]
    fn ids_sort_by_creation_second() {
        let early = MessageId::lower_bound_at(chrono::Utc::now() - chrono::Duration::seconds(10));
        let now = MessageId::new();
        assert!(early < now);
    }
}
