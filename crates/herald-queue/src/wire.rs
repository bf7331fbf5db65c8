//! What delivery tasks look like on the broker.
//!
//! One broker message carries a batch of tasks — all the tasks one publish
//! hands over, e.g. every delivery of an accept batch — so the broker's cost
//! (a publish, a confirm, a delivery and an ack) is paid per batch, not per
//! delivery. Inside, tasks are grouped by message, and a message's content
//! (payload, event type) is written once however many endpoints it goes to.
//!
//! Version 2, the current one, is a JSON object whose first member is the
//! version tag:
//!
//! ```json
//! {"v":2,"messages":[{"tenant_id":"tnt_…","app_id":"app_…","msg_id":"msg_…",
//!   "content":{"event_type":"user.created","created_at_us":1765…,"payload":{…}},
//!   "deliveries":[{"endpoint_id":"ep_…","endpoint_version_us":1765…,"attempt":1}]}]}
//! ```
//!
//! Version 1 (before batches) was one flat task object without a tag; it is
//! still read, so tasks queued by an older process are delivered after an
//! upgrade. Ids are checked as they are decoded: a body with a malformed id is
//! refused whole, like any other malformed body.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, EndpointId, EventTypeName, MessageId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{DeliveryTask, MessageContent};

/// The version this crate writes.
pub const VERSION: u8 = 2;

/// The prefix every version-2 body starts with (the encoder writes the tag first).
const V2_PREFIX: &[u8] = b"{\"v\":";

/// Encodes `tasks` as one broker message body.
pub fn encode(tasks: &[DeliveryTask]) -> Result<Vec<u8>, serde_json::Error> {
    let mut messages: Vec<OutMessage<'_>> = Vec::new();
    for task in tasks {
        let delivery = OutDelivery {
            endpoint_id: &task.endpoint_id,
            endpoint_version_us: task.endpoint_version.map(|at| at.timestamp_micros()),
            attempt: task.attempt,
            manual: task.manual,
            record_failures: task.record_failures,
        };
        match messages.last_mut() {
            Some(last) if last.holds(task) => last.deliveries.push(delivery),
            _ => messages.push(OutMessage {
                tenant_id: &task.tenant_id,
                app_id: &task.app_id,
                msg_id: &task.msg_id,
                content: task.content.as_ref(),
                content_out: task.content.as_deref().map(|content| OutContent {
                    event_type: &content.event_type,
                    created_at_us: content.created_at.timestamp_micros(),
                    payload: &content.payload,
                }),
                deliveries: vec![delivery],
            }),
        }
    }
    serde_json::to_vec(&OutBatch {
        v: VERSION,
        messages,
    })
}

/// Decodes a broker message body of either version into its tasks.
pub fn decode(body: &[u8]) -> Result<Vec<DeliveryTask>, serde_json::Error> {
    if !body.starts_with(V2_PREFIX) {
        return serde_json::from_slice::<TaskV1>(body).map(|task| vec![task.into()]);
    }
    let batch: InBatch = serde_json::from_slice(body)?;
    if batch.v != VERSION {
        return Err(serde::de::Error::custom(format!(
            "unknown task batch version {}",
            batch.v
        )));
    }
    let mut tasks = Vec::new();
    for message in batch.messages {
        let content = message.content.map(|content| {
            Arc::new(MessageContent {
                event_type: content.event_type,
                payload: content.payload,
                created_at: from_micros(content.created_at_us),
            })
        });
        for delivery in message.deliveries {
            tasks.push(DeliveryTask {
                tenant_id: message.tenant_id.clone(),
                app_id: message.app_id.clone(),
                msg_id: message.msg_id.clone(),
                endpoint_id: delivery.endpoint_id,
                attempt: delivery.attempt,
                manual: delivery.manual,
                record_failures: delivery.record_failures,
                content: content.clone(),
                endpoint_version: delivery.endpoint_version_us.map(from_micros),
            });
        }
    }
    Ok(tasks)
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

#[derive(Serialize)]
struct OutBatch<'a> {
    v: u8,
    messages: Vec<OutMessage<'a>>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    tenant_id: &'a TenantId,
    app_id: &'a ApplicationId,
    msg_id: &'a MessageId,
    /// The shared content, to tell which tasks belong together.
    #[serde(skip)]
    content: Option<&'a Arc<MessageContent>>,
    #[serde(rename = "content", skip_serializing_if = "Option::is_none")]
    content_out: Option<OutContent<'a>>,
    deliveries: Vec<OutDelivery<'a>>,
}

impl OutMessage<'_> {
    /// Whether `task` is another delivery of this message, with the same content.
    fn holds(&self, task: &DeliveryTask) -> bool {
        *self.msg_id == task.msg_id
            && *self.tenant_id == task.tenant_id
            && match (self.content, &task.content) {
                (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs) || mine == theirs,
                (None, None) => true,
                _ => false,
            }
    }
}

#[derive(Serialize)]
struct OutContent<'a> {
    event_type: &'a EventTypeName,
    created_at_us: i64,
    payload: &'a RawValue,
}

#[derive(Serialize)]
struct OutDelivery<'a> {
    endpoint_id: &'a EndpointId,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_version_us: Option<i64>,
    attempt: u32,
    #[serde(skip_serializing_if = "is_false")]
    manual: bool,
    #[serde(skip_serializing_if = "is_zero")]
    record_failures: u32,
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

#[derive(Deserialize)]
struct InBatch {
    v: u8,
    messages: Vec<InMessage>,
}

#[derive(Deserialize)]
struct InMessage {
    tenant_id: TenantId,
    app_id: ApplicationId,
    msg_id: MessageId,
    #[serde(default)]
    content: Option<InContent>,
    deliveries: Vec<InDelivery>,
}

#[derive(Deserialize)]
struct InContent {
    event_type: EventTypeName,
    created_at_us: i64,
    payload: Box<RawValue>,
}

#[derive(Deserialize)]
struct InDelivery {
    endpoint_id: EndpointId,
    #[serde(default)]
    endpoint_version_us: Option<i64>,
    attempt: u32,
    #[serde(default)]
    manual: bool,
    #[serde(default)]
    record_failures: u32,
}

/// A version-1 body: one task, flat.
#[derive(Deserialize)]
struct TaskV1 {
    tenant_id: TenantId,
    app_id: ApplicationId,
    msg_id: MessageId,
    endpoint_id: EndpointId,
    attempt: u32,
    manual: bool,
    #[serde(default)]
    record_failures: u32,
}

impl From<TaskV1> for DeliveryTask {
    fn from(v1: TaskV1) -> Self {
        Self {
            attempt: v1.attempt,
            manual: v1.manual,
            record_failures: v1.record_failures,
            ..DeliveryTask::new(v1.tenant_id, v1.app_id, v1.msg_id, v1.endpoint_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(payload: &str) -> Arc<MessageContent> {
        Arc::new(MessageContent {
            event_type: EventTypeName::parse("user.created").unwrap(),
            payload: RawValue::from_string(payload.to_owned()).unwrap(),
            created_at: from_micros(1_765_000_000_123_456),
        })
    }

    #[test]
    fn a_fanned_out_message_travels_once_with_all_its_deliveries() {
        let (tenant, app, msg) = (TenantId::new(), ApplicationId::new(), MessageId::new());
        let shared = content(r#"{"big": "body", "n": [1, 2.50, 3]}"#);
        let tasks: Vec<DeliveryTask> = (0..3)
            .map(|_| DeliveryTask {
                content: Some(shared.clone()),
                endpoint_version: Some(from_micros(1_765_000_000_000_001)),
                ..DeliveryTask::new(tenant.clone(), app.clone(), msg.clone(), EndpointId::new())
            })
            .collect();
        let body = encode(&tasks).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":2,"#), "{text}");
        assert_eq!(text.matches("\"payload\"").count(), 1, "{text}");
        // The payload is carried byte for byte, as it is signed.
        assert!(text.contains(r#"{"big": "body", "n": [1, 2.50, 3]}"#));
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded, tasks);
        let first = decoded[0].content.as_ref().unwrap();
        assert!(Arc::ptr_eq(first, decoded[2].content.as_ref().unwrap()));
    }

    #[test]
    fn tasks_of_different_messages_and_without_content_round_trip() {
        let tenant = TenantId::new();
        let with = DeliveryTask {
            content: Some(content("{}")),
            ..DeliveryTask::new(
                tenant.clone(),
                ApplicationId::new(),
                MessageId::new(),
                EndpointId::new(),
            )
        };
        let without = DeliveryTask {
            attempt: 4,
            manual: true,
            record_failures: 2,
            ..DeliveryTask::new(
                tenant,
                ApplicationId::new(),
                MessageId::new(),
                EndpointId::new(),
            )
        };
        let tasks = vec![with, without.clone(), without];
        assert_eq!(decode(&encode(&tasks).unwrap()).unwrap(), tasks);
    }

    #[test]
    fn version_1_tasks_queued_before_batches_still_decode() {
        let (tenant, app, msg, ep) = (
            TenantId::new(),
            ApplicationId::new(),
            MessageId::new(),
            EndpointId::new(),
        );
        let v1 = format!(
            r#"{{"tenant_id":"{tenant}","app_id":"{app}","msg_id":"{msg}","endpoint_id":"{ep}","attempt":2,"manual":false}}"#
        );
        let decoded = decode(v1.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            vec![DeliveryTask {
                attempt: 2,
                ..DeliveryTask::new(tenant, app, msg, ep)
            }]
        );
    }

    #[test]
    fn malformed_ids_unknown_versions_and_junk_are_refused() {
        let bad_id = r#"{"v":2,"messages":[{"tenant_id":"tnt_1","app_id":"app_1","msg_id":"msg_1","deliveries":[]}]}"#;
        assert!(decode(bad_id.as_bytes()).is_err());
        assert!(decode(br#"{"v":3,"messages":[]}"#).is_err());
        assert!(decode(b"not json").is_err());
    }
}
