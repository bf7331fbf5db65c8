//! The records the store reads and writes. They hold validated values only.

use chrono::{DateTime, Utc};
use herald_core::policy::RetryPolicySpec;
use herald_signature::SignatureScheme;
use serde::{Deserialize, Serialize};

use herald_core::source::{SourceKind, SourceSecret};
use herald_core::{
    ApiKeyId, ApplicationId, AttemptId, ChannelName, EndpointHeaders, EndpointId, EndpointSecret,
    EndpointUrl, ErrorClass, EventTypeFilter, EventTypeName, FeatureFlag, MessageId, Metadata,
    SourceId, TenantId, Uid,
};

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An API key as stored: its hash and a displayable prefix, never the key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Application {
    pub id: ApplicationId,
    pub uid: Option<Uid>,
    pub name: String,
    pub metadata: Metadata,
    pub throttle_rate: Option<u16>,
    /// The application's retry policy; its endpoints inherit what it sets.
    pub retry_policy: Option<RetryPolicySpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct EventType {
    pub name: EventTypeName,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    pub feature_flag: Option<FeatureFlag>,
    pub schemas: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: ApplicationId,
    pub uid: Option<Uid>,
    pub url: EndpointUrl,
    pub description: String,
    pub version: u16,
    pub disabled: bool,
    /// `None` = every event type; else names and patterns (`order.*`, `*`).
    pub event_types: Option<Vec<EventTypeFilter>>,
    /// `None` = every channel.
    pub channels: Option<Vec<ChannelName>>,
    pub metadata: Metadata,
    pub throttle_rate: Option<u16>,
    pub headers: EndpointHeaders,
    pub secrets: EndpointSecrets,
    /// How deliveries are signed; the key kind in `secrets` matches it
    /// (an Ed25519 pair for `ed25519`, a `whsec_` secret otherwise).
    pub signature_scheme: SignatureScheme,
    /// The endpoint's own retry policy; unset parts come from `app_retry_policy`.
    pub retry_policy: Option<RetryPolicySpec>,
    /// The application's retry policy as read with the endpoint (read only:
    /// writing an endpoint never changes it).
    pub app_retry_policy: Option<RetryPolicySpec>,
    /// Written by the workers and by enabling or disabling; not part of the
    /// endpoint's version.
    pub health: EndpointHealth,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A source of inbound webhooks: where a provider posts, how its requests
/// are verified, and the application they become messages of.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: SourceId,
    pub app_id: ApplicationId,
    pub description: String,
    /// The provider and its settings.
    pub kind: SourceKind,
    /// Sealed at rest when the store has a main key.
    pub secret: SourceSecret,
    /// How far a signed timestamp may be from now (timestamped providers).
    pub tolerance_seconds: u32,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an endpoint has been doing: the workers count failures, open and
/// close its circuit breaker and may disable it. An update of the endpoint
/// writes only `disabled_at` and `disabled_reason` of it, and clears the rest
/// when it enables a disabled endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointHealth {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The first failure since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    /// While set and in the future, the breaker is open: deliveries wait.
    /// Once past, one probe attempt decides (half-open).
    pub breaker_open_until: Option<DateTime<Utc>>,
    /// When the endpoint was last disabled, and why.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl EndpointHealth {
    /// Whether a success has something to reset.
    pub fn is_failing(&self) -> bool {
        self.consecutive_failures > 0 || self.breaker_open_until.is_some()
    }
}

/// A message posted for an application.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub app_id: ApplicationId,
    /// The client's own unique id for the message, unique per application.
    pub event_id: Option<Uid>,
    pub event_type: EventTypeName,
    pub channels: Option<Vec<ChannelName>>,
    /// Free-form labels for searching (Svix `tags`).
    pub tags: Option<Vec<String>>,
    /// The payload bytes exactly as received; `None` once expunged.
    pub payload: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A delivery as a task names it: its message and endpoint, and their owners.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub tenant_id: TenantId,
    pub app_id: ApplicationId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
}

/// What a worker loads for one task ([`crate::Outbox::delivery_targets`]):
/// `None` for what no longer exists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryTarget {
    pub delivery: Option<Delivery>,
    pub message: Option<Message>,
    pub endpoint: Option<Endpoint>,
}

/// An attempt to record with its delivery's new state, in a batch
/// ([`crate::AttemptLog::record_attempts`]).
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub tenant_id: TenantId,
    pub attempt: Attempt,
    pub update: DeliveryUpdate,
}

/// A message to store with one delivery per endpoint, in a batch
/// ([`crate::Outbox::insert_messages`]).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant_id: TenantId,
    pub message: Message,
    pub endpoint_ids: Vec<EndpointId>,
}

// Where a delivery stands lives in herald-core, with the retry decision that
// moves it (`Decision::next_state`); re-exported so `herald_store::DeliveryState`
// still names it.
pub use herald_core::DeliveryState;

/// One message × endpoint: the unit of delivery work.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub app_id: ApplicationId,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A manual attempt was asked for (resend or recover) and not made yet.
    pub manual: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A delivery as its API status: Svix's `MessageStatus` (success, pending,
/// fail, sending), which merges `failed` and `dead`, and tells a delivery not
/// yet attempted (`pending`) from one between retries (`sending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Success,
    Pending,
    Fail,
    Sending,
}

impl Delivery {
    pub fn status(&self) -> DeliveryStatus {
        match self.state {
            DeliveryState::Succeeded => DeliveryStatus::Success,
            DeliveryState::Failed | DeliveryState::Dead => DeliveryStatus::Fail,
            DeliveryState::Pending | DeliveryState::Sending if self.attempts == 0 => {
                DeliveryStatus::Pending
            }
            DeliveryState::Pending | DeliveryState::Sending => DeliveryStatus::Sending,
        }
    }
}

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptTrigger {
    /// The delivery schedule (first try or a retry).
    Scheduled,
    /// A person, through resend or recover.
    Manual,
}

impl AttemptTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(Self::Scheduled),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// One HTTP request made (or refused) for a delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub app_id: ApplicationId,
    pub url: String,
    /// 0 when no response was received.
    pub status_code: u16,
    /// Why the attempt failed; `None` when it succeeded. Stored as its name
    /// ([`ErrorClass::as_str`]) in the `error_class` text column; a stored
    /// name this version does not know reads as [`ErrorClass::Other`]
    /// ([`ErrorClass::from_stored`]) rather than making the row unreadable.
    pub error_class: Option<ErrorClass>,
    /// The start of the response, as text without NUL (the worker's
    /// `send::response_text`): PostgreSQL's `TEXT` cannot hold U+0000.
    pub response_body: Option<String>,
    /// The request's headers as a JSON object (name → value), sensitive
    /// values redacted; `None` for attempts made before they were kept.
    pub request_headers: Option<String>,
    /// The response's headers as a JSON object, at most a few kilobytes;
    /// `None` without a response, and once expunged.
    pub response_headers: Option<String>,
    /// How long the attempt took, in microseconds.
    pub duration_us: u64,
    pub trigger: AttemptTrigger,
    pub created_at: DateTime<Utc>,
}

impl Attempt {
    /// The duration in whole milliseconds, as the API reports it.
    pub fn duration_ms(&self) -> u32 {
        u32::try_from(self.duration_us / 1000).unwrap_or(u32::MAX)
    }
}

/// The state a delivery moves to together with an attempt.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A delivery the outbox relay claimed, with the tenant it belongs to.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub tenant_id: TenantId,
    pub delivery: Delivery,
}

/// Filters of an attempt listing, on top of the keyset [`crate::ListQuery`]
/// (keyed by attempt id).
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub msg_id: Option<MessageId>,
    pub endpoint_id: Option<EndpointId>,
    /// `Some(true)`: only successful attempts (2xx); `Some(false)`: only failed.
    pub succeeded: Option<bool>,
    /// Only attempts whose status code is in `[class, class + 100)`; 0 = no response.
    pub status_code_class: Option<u16>,
    /// Of messages sent on this channel.
    pub channel: Option<ChannelName>,
    /// Of messages of these event types.
    pub event_types: Option<Vec<EventTypeName>>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
}

/// Filters of an endpoint's deliveries (keyed by message id).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Of messages sent on this channel.
    pub channel: Option<ChannelName>,
    /// Of messages of these event types.
    pub event_types: Option<Vec<EventTypeName>>,
    /// Messages created before this time.
    pub before: Option<DateTime<Utc>>,
    /// Messages created after this time.
    pub after: Option<DateTime<Utc>>,
}

/// A delivery with its message.
#[derive(Debug, Clone)]
pub struct DeliveredMessage {
    pub delivery: Delivery,
    pub message: Message,
}

/// An endpoint's deliveries in a window, by [`DeliveryStatus`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub success: u64,
    pub pending: u64,
    pub fail: u64,
    pub sending: u64,
}

/// Filters of a message listing, on top of the keyset [`crate::ListQuery`].
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Messages with a delivery (to any endpoint) in this status.
    pub status: Option<DeliveryStatus>,
    pub channel: Option<ChannelName>,
    pub event_types: Option<Vec<EventTypeName>>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
}

/// One attempt as the stats service counts it.
#[derive(Debug, Clone)]
pub struct StatsSample {
    pub attempt_id: AttemptId,
    pub tenant_id: TenantId,
    pub app_id: ApplicationId,
    pub endpoint_id: EndpointId,
    pub success: bool,
    /// Why it failed (the worker's error class); `None` for a success.
    pub error_class: Option<ErrorClass>,
    pub duration_us: u64,
    /// When the attempt was made: picks its minute and hour buckets.
    pub at: DateTime<Utc>,
}

/// How long a stored stats bucket spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGranularity {
    Minute,
    Hour,
}

impl StatsGranularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            _ => None,
        }
    }

    /// The start of the bucket of this granularity that holds `at`.
    pub fn truncate(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let span = match self {
            Self::Minute => 60,
            Self::Hour => 3600,
        };
        let seconds = at.timestamp().div_euclid(span) * span;
        DateTime::from_timestamp(seconds, 0).unwrap_or(at)
    }
}

/// A stored bucket: the attempts of one endpoint that started in
/// `[start, start + granularity)`.
#[derive(Debug, Clone)]
pub struct StatsBucket {
    pub endpoint_id: EndpointId,
    pub granularity: StatsGranularity,
    pub start: DateTime<Utc>,
    pub bucket: herald_core::stats::Bucket,
}

/// An endpoint's current signing secret and the previous ones that stay valid
/// until their grace period ends, so receivers can roll over without downtime.
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    pub current: EndpointSecret,
    pub previous: Vec<PreviousSecret>,
}

#[derive(Debug, Clone)]
pub struct PreviousSecret {
    pub secret: EndpointSecret,
    pub expires_at: DateTime<Utc>,
}

impl EndpointSecrets {
    /// At most this many old secrets are kept during overlapping rotations.
    pub const MAX_PREVIOUS: usize = 10;

    pub fn new(current: EndpointSecret) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Makes `next` current; the old current stays valid for `grace`. Expired
    /// secrets are dropped, and beyond [`Self::MAX_PREVIOUS`] the oldest go.
    pub fn rotate(&mut self, next: EndpointSecret, grace: chrono::Duration, now: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.current, next);
        self.previous.retain(|p| p.expires_at > now);
        if grace > chrono::Duration::zero() {
            self.previous.push(PreviousSecret {
                secret: old,
                expires_at: now + grace,
            });
        }
        self.previous.sort_by_key(|p| p.expires_at);
        let excess = self.previous.len().saturating_sub(Self::MAX_PREVIOUS);
        self.previous.drain(..excess);
    }

    /// Every key a delivery made at `now` is signed with: current first.
    pub fn valid_at(&self, now: DateTime<Utc>) -> Vec<&EndpointSecret> {
        std::iter::once(&self.current)
            .chain(
                self.previous
                    .iter()
                    .filter(|p| p.expires_at > now)
                    .map(|p| &p.secret),
            )
            .collect()
    }
}

/// The JSON form of [`EndpointSecrets`] in the `endpoint.secrets` column.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredSecrets {
    pub current: String,
    #[serde(default)]
    pub previous: Vec<StoredPreviousSecret>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredPreviousSecret {
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

impl From<&EndpointSecrets> for StoredSecrets {
    fn from(secrets: &EndpointSecrets) -> Self {
        Self {
            current: secrets.current.expose(),
            previous: secrets
                .previous
                .iter()
                .map(|p| StoredPreviousSecret {
                    key: p.secret.expose(),
                    expires_at: p.expires_at,
                })
                .collect(),
        }
    }
}

impl TryFrom<StoredSecrets> for EndpointSecrets {
    type Error = String;

    fn try_from(stored: StoredSecrets) -> Result<Self, Self::Error> {
        let parse = |s: &str| EndpointSecret::parse(s).map_err(|e| e.msg);
        Ok(Self {
            current: parse(&stored.current)?,
            previous: stored
                .previous
                .iter()
                .map(|p| {
                    Ok(PreviousSecret {
                        secret: parse(&p.key)?,
                        expires_at: p.expires_at,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

/// A delivery that exhausted its retry schedule (state `dead`), as the
/// dead-letter listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadDelivery {
    pub msg_id: MessageId,
    pub msg_event_id: Option<Uid>,
    pub event_type: EventTypeName,
    pub endpoint_id: EndpointId,
    /// Attempts the delivery's schedule made before it died.
    pub attempts: u32,
    /// Status code of the last attempt (0: no response); `None` when no
    /// attempt is recorded (a task dead-lettered before any was).
    pub last_status_code: Option<u16>,
    pub last_error_class: Option<ErrorClass>,
    /// When the delivery went dead (its last change).
    pub died_at: DateTime<Utc>,
    /// When its message was created: what `before` and `after` filter on.
    pub msg_created_at: DateTime<Utc>,
}

impl DeadDelivery {
    /// The listing's iterator key: message id, then endpoint id.
    pub fn key(&self) -> String {
        dead_letter_key(&self.msg_id, &self.endpoint_id)
    }
}

/// The iterator key of a dead letter: `{msg_id}:{endpoint_id}` (ids never
/// hold a `:`).
pub fn dead_letter_key(msg_id: &MessageId, endpoint_id: &EndpointId) -> String {
    format!("{msg_id}:{endpoint_id}")
}

/// Splits a dead-letter iterator key into its ids; `None` when it is not one.
pub fn parse_dead_letter_key(key: &str) -> Option<(MessageId, EndpointId)> {
    let (msg, endpoint) = key.split_once(':')?;
    Some((msg.parse().ok()?, endpoint.parse().ok()?))
}

/// Which dead deliveries of an application a listing or a redrive selects.
/// Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub endpoint_id: Option<EndpointId>,
    pub msg_ids: Option<Vec<MessageId>>,
    pub event_types: Option<Vec<EventTypeName>>,
    /// Messages created before this time.
    pub before: Option<DateTime<Utc>>,
    /// Messages created after this time.
    pub after: Option<DateTime<Utc>>,
}

/// A dead letter taken from the queue, as the worker's drain checks it
/// against the database ([`crate::Outbox::confirm_dead_letters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterKey {
    pub delivery: DeliveryKey,
    /// The attempt number the dead-lettered task was for.
    pub attempt: u32,
}

/// What [`crate::Outbox::confirm_dead_letters`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterCheck {
    /// Deliveries the database already had dead.
    pub already_dead: u64,
    /// Deliveries still in flight at the letter's attempt, marked dead now.
    pub marked_dead: u64,
    /// Deliveries that moved on since (redriven, resent, answered, deleted):
    /// left as they are.
    pub moved_on: u64,
}
