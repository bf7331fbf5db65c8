//! Which endpoints receive a message: the fan-out rule, shared by the API
//! (which records one delivery per matching endpoint) and anything that replays,
//! and the entries of an endpoint's event-type filter ([`EventTypeFilter`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ChannelName, EventTypeName, ValidationError};

/// One entry of an endpoint's event-type filter (`filterTypes`): an exact
/// event-type name (`invoice.paid`), a prefix pattern `invoice.*` that
/// matches every type with one or more segments after `invoice.`
/// (`invoice.paid`, `invoice.paid.v2`, not `invoice` itself), or `*`, which
/// matches every type.
///
/// Matching a name costs one comparison of at most its length, so checking a
/// message against an endpoint is O(filter entries) whatever kind they are.
/// It reads and writes as its text, so stored filters keep their JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypeFilter(Kind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Exact(EventTypeName),
    /// `invoice.*`: what comes before its `*` (`invoice.`) starts the names
    /// it matches.
    Prefix(String),
    Any,
}

impl EventTypeFilter {
    /// Checks a filter entry given as input: an event-type name as
    /// [`EventTypeName::parse`] accepts it, or a pattern whose `*` stands
    /// alone or as its whole last segment, after a name (`order.*`).
    pub fn parse(s: impl Into<String>) -> Result<Self, ValidationError> {
        Self::read(s.into(), EventTypeName::parse)
    }

    /// Accepts a stored entry by the rules it was stored under.
    pub fn from_stored(s: impl Into<String>) -> Result<Self, ValidationError> {
        Self::read(s.into(), EventTypeName::from_stored)
    }

    fn read(
        s: String,
        name: fn(String) -> Result<EventTypeName, ValidationError>,
    ) -> Result<Self, ValidationError> {
        if s == "*" {
            return Ok(Self(Kind::Any));
        }
        if !s.contains('*') {
            return name(s).map(|n| Self(Kind::Exact(n)));
        }
        let misplaced = || {
            ValidationError::new(
                "eventTypes",
                format!(
                    "'{s}' is not a valid filter: '*' may only stand alone or as the whole \
                     last segment after an event-type name, as in 'order.*'"
                ),
            )
        };
        let Some(stem) = s.strip_suffix(".*") else {
            return Err(misplaced());
        };
        if stem.contains('*') {
            return Err(misplaced());
        }
        // The stem is held to the rules of a name, so `order.*` is as long
        // and as plain as the types it matches.
        name(stem.to_owned()).map_err(|e| {
            ValidationError::new(
                "eventTypes",
                format!(
                    "'{s}' is not a valid filter: the part before '.*' {}",
                    e.msg
                ),
            )
        })?;
        Ok(Self(Kind::Prefix(s)))
    }

    /// Whether a message of `event_type` passes this entry.
    pub fn matches(&self, event_type: &EventTypeName) -> bool {
        match &self.0 {
            Kind::Exact(name) => name == event_type,
            Kind::Prefix(pattern) => {
                let prefix = &pattern[..pattern.len() - 1];
                let name = event_type.as_str();
                name.len() > prefix.len() && name.starts_with(prefix)
            }
            Kind::Any => true,
        }
    }

    /// The event-type name, when this entry is one rather than a pattern.
    pub fn exact(&self) -> Option<&EventTypeName> {
        match &self.0 {
            Kind::Exact(name) => Some(name),
            Kind::Prefix(_) | Kind::Any => None,
        }
    }

    /// The entry as written: `invoice.paid`, `invoice.*` or `*`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Kind::Exact(name) => name.as_str(),
            Kind::Prefix(pattern) => pattern,
            Kind::Any => "*",
        }
    }

    pub fn into_inner(self) -> String {
        match self.0 {
            Kind::Exact(name) => name.into_inner(),
            Kind::Prefix(pattern) => pattern,
            Kind::Any => "*".to_owned(),
        }
    }
}

impl From<EventTypeName> for EventTypeFilter {
    fn from(name: EventTypeName) -> Self {
        Self(Kind::Exact(name))
    }
}

impl fmt::Display for EventTypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for EventTypeFilter {
    type Error = ValidationError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_stored(s)
    }
}

impl From<EventTypeFilter> for String {
    fn from(filter: EventTypeFilter) -> Self {
        filter.into_inner()
    }
}

/// Whether an endpoint with these filters receives a message of `event_type`
/// sent on `message_channels`.
///
/// As in Svix: an endpoint without event-type filter receives every type; one
/// without channels receives every message; one with channels receives only
/// messages sent on at least one of them. An event-type filter passes a
/// message when any of its entries matches ([`EventTypeFilter::matches`]).
pub fn endpoint_receives(
    endpoint_event_types: Option<&[EventTypeFilter]>,
    endpoint_channels: Option<&[ChannelName]>,
    event_type: &EventTypeName,
    message_channels: Option<&[ChannelName]>,
) -> bool {
    let type_matches = endpoint_event_types
        .is_none_or(|filters| filters.iter().any(|filter| filter.matches(event_type)));
    let channel_matches = match endpoint_channels {
        None => true,
        Some(wanted) => message_channels
            .unwrap_or_default()
            .iter()
            .any(|c| wanted.contains(c)),
    };
    type_matches && channel_matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> Vec<EventTypeFilter> {
        names
            .iter()
            .map(|n| EventTypeFilter::parse(*n).unwrap())
            .collect()
    }

    fn channels(names: &[&str]) -> Vec<ChannelName> {
        names
            .iter()
            .map(|n| ChannelName::parse(*n).unwrap())
            .collect()
    }

    fn name(n: &str) -> EventTypeName {
        EventTypeName::parse(n).unwrap()
    }

    #[test]
    fn unfiltered_endpoints_receive_everything() {
        let signup = name("user.signup");
        assert!(endpoint_receives(None, None, &signup, None));
        assert!(endpoint_receives(
            None,
            None,
            &signup,
            Some(&channels(&["a"]))
        ));
    }

    #[test]
    fn event_type_filters_are_exact() {
        let filter = types(&["user.signup"]);
        assert!(endpoint_receives(
            Some(&filter),
            None,
            &name("user.signup"),
            None
        ));
        assert!(!endpoint_receives(
            Some(&filter),
            None,
            &name("user.signup.v2"),
            None
        ));
        assert!(!endpoint_receives(Some(&filter), None, &name("user"), None));
    }

    #[test]
    fn a_prefix_pattern_matches_one_or_more_trailing_segments() {
        let filter = types(&["order.*"]);
        for matching in [
            "order.created",
            "order.created.v2",
            "order.a.b.c",
            "order.-",
        ] {
            assert!(
                endpoint_receives(Some(&filter), None, &name(matching), None),
                "{matching}"
            );
        }
        for other in [
            "order",
            "orders.created",
            "order_created",
            "xorder.created",
            "re.order.x",
        ] {
            assert!(
                !endpoint_receives(Some(&filter), None, &name(other), None),
                "{other}"
            );
        }
        let deep = types(&["order.payment.*"]);
        assert!(endpoint_receives(
            Some(&deep),
            None,
            &name("order.payment.failed"),
            None
        ));
        assert!(!endpoint_receives(
            Some(&deep),
            None,
            &name("order.payment"),
            None
        ));
        assert!(!endpoint_receives(
            Some(&deep),
            None,
            &name("order.created"),
            None
        ));
    }

    #[test]
    fn a_star_matches_every_type_and_mixes_with_other_entries() {
        let star = types(&["*"]);
        for any in ["a", "order.created", "x.y.z"] {
            assert!(endpoint_receives(Some(&star), None, &name(any), None));
        }
        let mixed = types(&["user.signup", "order.*"]);
        assert!(endpoint_receives(
            Some(&mixed),
            None,
            &name("user.signup"),
            None
        ));
        assert!(endpoint_receives(
            Some(&mixed),
            None,
            &name("order.paid"),
            None
        ));
        assert!(!endpoint_receives(
            Some(&mixed),
            None,
            &name("user.deleted"),
            None
        ));
    }

    #[test]
    fn wildcards_still_need_a_shared_channel() {
        let star = types(&["*"]);
        let wanted = channels(&["project_1"]);
        let t = name("order.created");
        assert!(endpoint_receives(
            Some(&star),
            Some(&wanted),
            &t,
            Some(&channels(&["project_1"]))
        ));
        assert!(!endpoint_receives(Some(&star), Some(&wanted), &t, None));
    }

    #[test]
    fn misplaced_stars_are_refused_with_the_field() {
        for bad in [
            "or*der",
            "*.x",
            "order*",
            "order.*.created",
            "**",
            "*.*",
            "order.**",
            ".*",
            "a b.*",
            "order.x*",
            "*order",
        ] {
            let error = EventTypeFilter::parse(bad).expect_err(bad);
            assert_eq!(error.loc, ["body", "eventTypes"], "{bad}");
            assert!(error.msg.contains(bad), "{bad}: {}", error.msg);
        }
        // What is not a pattern follows the rules of names.
        assert!(EventTypeFilter::parse("not a name").is_err());
        assert!(EventTypeFilter::parse("").is_err());
    }

    #[test]
    fn entries_read_and_write_as_their_text() {
        for text in ["invoice.paid", "invoice.*", "*", "a.b.c.*"] {
            let filter = EventTypeFilter::parse(text).unwrap();
            assert_eq!(filter.as_str(), text);
            assert_eq!(filter.to_string(), text);
            let json = serde_json::to_string(&filter).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<EventTypeFilter>(&json).unwrap(),
                filter
            );
            assert_eq!(filter.clone().into_inner(), text);
        }
        assert_eq!(
            EventTypeFilter::parse("invoice.paid").unwrap().exact(),
            Some(&name("invoice.paid"))
        );
        assert_eq!(EventTypeFilter::parse("invoice.*").unwrap().exact(), None);
        assert!(serde_json::from_str::<EventTypeFilter>("\"or*der\"").is_err());
    }

    #[test]
    fn channel_filters_need_a_shared_channel() {
        let wanted = channels(&["project_1", "project_2"]);
        let t = name("t");
        assert!(endpoint_receives(
            None,
            Some(&wanted),
            &t,
            Some(&channels(&["x", "project_2"]))
        ));
        assert!(!endpoint_receives(
            None,
            Some(&wanted),
            &t,
            Some(&channels(&["x"]))
        ));
        assert!(!endpoint_receives(None, Some(&wanted), &t, None));
    }
}
