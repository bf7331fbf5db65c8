//! Operational webhooks: the events Herald sends a tenant about its own
//! endpoints and deliveries (Svix's "operational webhooks"), with the
//! payloads Svix documents (`EndpointCreatedEvent`, `EndpointDisabledEvent`,
//! `MessageAttemptExhaustedEvent`, …): `{"type", "timestamp", "data"}`.
//!
//! What is here is the vocabulary and the wire shape; where the events are
//! stored and sent from is `herald_store::operational`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{ApplicationId, AttemptId, EndpointId, EventTypeName, MessageId, Uid};

/// The attempt after whose failure `message.attempt.failing` is sent, as in
/// Svix ("sent on the fourth failure").
pub const FAILING_AFTER_ATTEMPT: u32 = 4;

/// The operational event types, as their names go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationalEventType {
    EndpointCreated,
    EndpointUpdated,
    EndpointDeleted,
    EndpointEnabled,
    EndpointDisabled,
    MessageAttemptExhausted,
    MessageAttemptFailing,
    MessageAttemptRecovered,
}

impl OperationalEventType {
    /// Every operational event type, in the order the docs list them.
    pub const ALL: [Self; 8] = [
        Self::EndpointCreated,
        Self::EndpointUpdated,
        Self::EndpointDeleted,
        Self::EndpointEnabled,
        Self::EndpointDisabled,
        Self::MessageAttemptExhausted,
        Self::MessageAttemptFailing,
        Self::MessageAttemptRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointCreated => "endpoint.created",
            Self::EndpointUpdated => "endpoint.updated",
            Self::EndpointDeleted => "endpoint.deleted",
            Self::EndpointEnabled => "endpoint.enabled",
            Self::EndpointDisabled => "endpoint.disabled",
            Self::MessageAttemptExhausted => "message.attempt.exhausted",
            Self::MessageAttemptFailing => "message.attempt.failing",
            Self::MessageAttemptRecovered => "message.attempt.recovered",
        }
    }

    /// The type named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The event type the message carrying this event is posted under.
    pub fn event_type_name(self) -> EventTypeName {
        EventTypeName::from_stored(self.as_str())
            .unwrap_or_else(|_| unreachable!("operational event type names are valid names"))
    }
}

/// Who disabled an endpoint (Svix's `EndpointDisabledTrigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisableTrigger {
    /// Through the API (`disabled: true`).
    Manual,
    /// By Herald: the endpoint answered 410 Gone, or kept failing.
    Automatic,
}

/// The attempt an attempt event is about (Svix's `MessageAttemptFailedData`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptSummary {
    pub id: AttemptId,
    /// 0 when no response came (timeout, refused connection, …).
    pub response_status_code: u16,
    pub timestamp: DateTime<Utc>,
}

/// What an event says beyond the endpoint it is about.
#[derive(Clone, Debug, PartialEq)]
pub enum EventDetail {
    /// `endpoint.created`, `.updated`, `.deleted`, `.enabled`.
    Endpoint,
    /// `endpoint.disabled`.
    Disabled {
        trigger: DisableTrigger,
        fail_since: Option<DateTime<Utc>>,
    },
    /// `message.attempt.*`.
    Attempt {
        msg_id: MessageId,
        last_attempt: AttemptSummary,
    },
}

/// One operational event about an endpoint of an application. The uids
/// (application, message `eventId`) are filled in where it is stored, which
/// reads them anyway; the endpoint's is the caller's.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationalEvent {
    pub event_type: OperationalEventType,
    pub app_id: ApplicationId,
    pub endpoint_id: EndpointId,
    pub endpoint_uid: Option<Uid>,
    pub detail: EventDetail,
}

/// The uids an event's payload names besides the endpoint's.
#[derive(Clone, Debug, Default)]
pub struct EventUids {
    pub app_uid: Option<Uid>,
    pub msg_event_id: Option<Uid>,
}

/// The body of an operational webhook.
#[derive(Serialize)]
pub struct OperationalPayload<'a> {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub timestamp: DateTime<Utc>,
    pub data: PayloadData<'a>,
}

/// `data` of an operational webhook: the application and endpoint, then what
/// the event type adds. Svix's attempt events carry no `endpointUid`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadData<'a> {
    pub app_id: &'a ApplicationId,
    pub app_uid: Option<&'a Uid>,
    pub endpoint_id: &'a EndpointId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_uid: Option<Option<&'a Uid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<DisableTrigger>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<&'a MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_event_id: Option<Option<&'a Uid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<&'a AttemptSummary>,
}

impl OperationalEvent {
    /// The event's wire form at `now`, with the uids read where it is stored.
    pub fn payload<'a>(
        &'a self,
        uids: &'a EventUids,
        now: DateTime<Utc>,
    ) -> OperationalPayload<'a> {
        let mut data = PayloadData {
            app_id: &self.app_id,
            app_uid: uids.app_uid.as_ref(),
            endpoint_id: &self.endpoint_id,
            endpoint_uid: Some(self.endpoint_uid.as_ref()),
            trigger: None,
            fail_since: None,
            msg_id: None,
            msg_event_id: None,
            last_attempt: None,
        };
        match &self.detail {
            EventDetail::Endpoint => {}
            EventDetail::Disabled {
                trigger,
                fail_since,
            } => {
                data.trigger = Some(*trigger);
                data.fail_since = *fail_since;
            }
            EventDetail::Attempt {
                msg_id,
                last_attempt,
            } => {
                data.endpoint_uid = None;
                data.msg_id = Some(msg_id);
                data.msg_event_id = Some(uids.msg_event_id.as_ref());
                data.last_attempt = Some(last_attempt);
            }
        }
        OperationalPayload {
            event_type: self.event_type.as_str(),
            timestamp: now,
            data,
        }
    }

    /// The message whose uid the payload names, for attempt events.
    pub fn msg_id(&self) -> Option<&MessageId> {
        match &self.detail {
            EventDetail::Attempt { msg_id, .. } => Some(msg_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_name_parses_back_and_is_a_valid_event_type_name() {
        for t in OperationalEventType::ALL {
            assert_eq!(OperationalEventType::parse(t.as_str()), Some(t));
            assert_eq!(t.event_type_name().as_str(), t.as_str());
        }
        assert_eq!(OperationalEventType::parse("endpoint.exploded"), None);
    }

    #[test]
    fn a_disabled_event_has_svix_shape() {
        let event = OperationalEvent {
            event_type: OperationalEventType::EndpointDisabled,
            app_id: ApplicationId::new(),
            endpoint_id: EndpointId::new(),
            endpoint_uid: None,
            detail: EventDetail::Disabled {
                trigger: DisableTrigger::Automatic,
                fail_since: None,
            },
        };
        let uids = EventUids::default();
        let json = serde_json::to_value(event.payload(&uids, Utc::now())).unwrap();
        assert_eq!(json["type"], "endpoint.disabled");
        assert_eq!(json["data"]["trigger"], "automatic");
        assert_eq!(json["data"]["appId"], event.app_id.as_str());
        assert!(json["data"]["endpointUid"].is_null());
        assert!(json["data"].get("lastAttempt").is_none());
    }

    #[test]
    fn an_attempt_event_names_the_message_and_the_attempt() {
        let attempt = AttemptSummary {
            id: AttemptId::new(),
            response_status_code: 500,
            timestamp: Utc::now(),
        };
        let event = OperationalEvent {
            event_type: OperationalEventType::MessageAttemptExhausted,
            app_id: ApplicationId::new(),
            endpoint_id: EndpointId::new(),
            endpoint_uid: None,
            detail: EventDetail::Attempt {
                msg_id: MessageId::new(),
                last_attempt: attempt.clone(),
            },
        };
        let uids = EventUids {
            app_uid: Uid::parse("shop").ok(),
            msg_event_id: None,
        };
        let json = serde_json::to_value(event.payload(&uids, Utc::now())).unwrap();
        assert_eq!(json["data"]["appUid"], "shop");
        assert!(json["data"]["msgEventId"].is_null());
        assert_eq!(json["data"]["lastAttempt"]["responseStatusCode"], 500);
        assert_eq!(json["data"]["lastAttempt"]["id"], attempt.id.as_str());
        assert!(json["data"].get("endpointUid").is_none());
    }
}
