//! Which endpoints receive a message: the fan-out rule, shared by the API
//! (which records one delivery per matching endpoint) and anything that replays.

use crate::{ChannelName, EventTypeName};

/// Whether an endpoint with these filters receives a message of `event_type`
/// sent on `message_channels`.
///
/// As in Svix: an endpoint without event-type filter receives every type; one
/// without channels receives every message; one with channels receives only
/// messages sent on at least one of them.
pub fn endpoint_receives(
    endpoint_event_types: Option<&[EventTypeName]>,
    endpoint_channels: Option<&[ChannelName]>,
    event_type: &EventTypeName,
    message_channels: Option<&[ChannelName]>,
) -> bool {
    let type_matches = endpoint_event_types.is_none_or(|types| types.contains(event_type));
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

    fn types(names: &[&str]) -> Vec<EventTypeName> {
        names
            .iter()
            .map(|n| EventTypeName::parse(*n).unwrap())
            .collect()
    }

    fn channels(names: &[&str]) -> Vec<ChannelName> {
        names
            .iter()
            .map(|n| ChannelName::parse(*n).unwrap())
            .collect()
    }

    #[test]
    fn unfiltered_endpoints_receive_everything() {
        let signup = EventTypeName::parse("user.signup").unwrap();
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
        let signup = EventTypeName::parse("user.signup").unwrap();
        let signup_v2 = EventTypeName::parse("user.signup.v2").unwrap();
        assert!(endpoint_receives(Some(&filter), None, &signup, None));
        assert!(!endpoint_receives(Some(&filter), None, &signup_v2, None));
    }

    #[test]
    fn channel_filters_need_a_shared_channel() {
        let wanted = channels(&["project_1", "project_2"]);
        let t = EventTypeName::parse("t").unwrap();
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
