//! Rows read back into records, written once for both stores. The two
//! databases keep the same columns but spell some of them differently
//! (PostgreSQL's `timestamptz`, `jsonb` and `int4` against SQLite's integer
//! microseconds, JSON text and 64-bit integers); [`StoredRow`] is that seam,
//! one small impl per backend, and everything above it is shared.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use herald_core::{
    ApiKeyId, ApplicationId, AttemptId, ChannelName, EndpointHeaders, EndpointId, EndpointUrl,
    EventTypeName, FeatureFlag, MessageId, Metadata, TenantId, Uid, ValidationError,
};

use crate::model::{
    ApiKey, Application, Attempt, AttemptTrigger, Delivery, DeliveryState, Endpoint,
    EndpointSecrets, EventType, Message, StoredSecrets, Tenant,
};
use crate::{StoreError, StoreResult};

/// A column value a row holds but the model cannot take.
pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// How a backend's row gives up its columns, in the store's own terms.
pub(crate) trait StoredRow {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
    fn optional_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>>;
    /// An integer column of any width.
    fn integer(&self, column: &str) -> StoreResult<i64>;
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>>;
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>>;
    fn optional_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>>;
    /// A JSON column decoded straight into `T` (`what` names it in a
    /// corruption error).
    fn optional_json<T: DeserializeOwned>(
        &self,
        column: &str,
        what: &str,
    ) -> StoreResult<Option<T>>;
}

fn json<T: DeserializeOwned>(row: &impl StoredRow, column: &str, what: &str) -> StoreResult<T> {
    row.optional_json(column, what)?
        .ok_or_else(|| corrupt(what, "is NULL"))
}

/// A JSON list of names, each read back with `parse`.
fn names<T>(
    row: &impl StoredRow,
    column: &str,
    parse: impl Fn(String) -> Result<T, ValidationError>,
    what: &str,
) -> StoreResult<Option<Vec<T>>> {
    let Some(names) = row.optional_json::<Vec<String>>(column, what)? else {
        return Ok(None);
    };
    names
        .into_iter()
        .map(|n| parse(n).map_err(|e| corrupt(what, e)))
        .collect::<StoreResult<Vec<T>>>()
        .map(Some)
}

fn parsed<T, E: std::fmt::Display>(
    row: &impl StoredRow,
    column: &str,
    parse: impl Fn(String) -> Result<T, E>,
    what: &str,
) -> StoreResult<T> {
    parse(row.text(column)?).map_err(|e| corrupt(what, e))
}

fn optional_parsed<T, E: std::fmt::Display>(
    row: &impl StoredRow,
    column: &str,
    parse: impl Fn(String) -> Result<T, E>,
    what: &str,
) -> StoreResult<Option<T>> {
    row.optional_text(column)?
        .map(|text| parse(text).map_err(|e| corrupt(what, e)))
        .transpose()
}

fn throttle(row: &impl StoredRow) -> StoreResult<Option<u16>> {
    Ok(row
        .optional_integer("throttle_rate")?
        .and_then(|v| u16::try_from(v).ok()))
}

pub(crate) fn tenant_from_row(row: &impl StoredRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id", |s| TenantId::parse(&s), "tenant.id")?,
        name: row.text("name")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn api_key_from_row(row: &impl StoredRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: parsed(row, "id", |s| ApiKeyId::parse(&s), "api_key.id")?,
        tenant_id: parsed(
            row,
            "tenant_id",
            |s| TenantId::parse(&s),
            "api_key.tenant_id",
        )?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        key_hash: row.bytes("key_hash")?,
        created_at: row.time("created_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

pub(crate) fn application_from_row(row: &impl StoredRow) -> StoreResult<Application> {
    Ok(Application {
        id: parsed(row, "id", |s| ApplicationId::parse(&s), "application.id")?,
        uid: optional_parsed(row, "uid", Uid::from_stored, "application.uid")?,
        name: row.text("name")?,
        metadata: json::<Metadata>(row, "metadata", "application.metadata")?,
        throttle_rate: throttle(row)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn event_type_from_row(row: &impl StoredRow) -> StoreResult<EventType> {
    Ok(EventType {
        name: parsed(row, "name", EventTypeName::from_stored, "event_type.name")?,
        description: row.text("description")?,
        archived: row.flag("archived")?,
        deprecated: row.flag("deprecated")?,
        feature_flag: optional_parsed(
            row,
            "feature_flag",
            FeatureFlag::parse,
            "event_type.feature_flag",
        )?,
        schemas: row.optional_json("schemas", "event_type.schemas")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn endpoint_from_row(row: &impl StoredRow) -> StoreResult<Endpoint> {
    let secrets: StoredSecrets = json(row, "secrets", "endpoint.secrets")?;
    let headers = EndpointHeaders::parse(json(row, "headers", "endpoint.headers")?)
        .map_err(|e| corrupt("endpoint.headers", e))?;
    Ok(Endpoint {
        id: parsed(row, "id", |s| EndpointId::parse(&s), "endpoint.id")?,
        app_id: parsed(
            row,
            "app_id",
            |s| ApplicationId::parse(&s),
            "endpoint.app_id",
        )?,
        uid: optional_parsed(row, "uid", Uid::from_stored, "endpoint.uid")?,
        url: parsed(row, "url", EndpointUrl::from_stored, "endpoint.url")?,
        description: row.text("description")?,
        version: u16::try_from(row.integer("version")?).unwrap_or(1),
        disabled: row.flag("disabled")?,
        event_types: names(
            row,
            "event_types",
            EventTypeName::from_stored,
            "endpoint.event_types",
        )?,
        channels: names(row, "channels", ChannelName::parse, "endpoint.channels")?,
        metadata: json(row, "metadata", "endpoint.metadata")?,
        throttle_rate: throttle(row)?,
        headers,
        secrets: EndpointSecrets::try_from(secrets).map_err(|e| corrupt("endpoint.secrets", e))?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn message_from_row(row: &impl StoredRow) -> StoreResult<Message> {
    Ok(Message {
        id: parsed(row, "id", |s| MessageId::parse(&s), "message.id")?,
        app_id: parsed(
            row,
            "app_id",
            |s| ApplicationId::parse(&s),
            "message.app_id",
        )?,
        event_id: optional_parsed(row, "event_id", Uid::from_stored, "message.event_id")?,
        event_type: parsed(
            row,
            "event_type",
            EventTypeName::from_stored,
            "message.event_type",
        )?,
        channels: names(row, "channels", ChannelName::parse, "message.channels")?,
        tags: row.optional_json("tags", "message.tags")?,
        payload: row.optional_bytes("payload")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(crate) fn delivery_from_row(row: &impl StoredRow) -> StoreResult<Delivery> {
    let state = row.text("state")?;
    Ok(Delivery {
        msg_id: parsed(row, "msg_id", |s| MessageId::parse(&s), "delivery.msg_id")?,
        endpoint_id: parsed(
            row,
            "endpoint_id",
            |s| EndpointId::parse(&s),
            "delivery.endpoint_id",
        )?,
        app_id: parsed(
            row,
            "app_id",
            |s| ApplicationId::parse(&s),
            "delivery.app_id",
        )?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery.state", &state))?,
        attempts: u32::try_from(row.integer("attempts")?).unwrap_or(0),
        next_attempt_at: row.optional_time("next_attempt_at")?,
        manual: row.flag("manual")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn attempt_from_row(row: &impl StoredRow) -> StoreResult<Attempt> {
    let trigger = row.text("trigger")?;
    Ok(Attempt {
        id: parsed(row, "id", |s| AttemptId::parse(&s), "message_attempt.id")?,
        msg_id: parsed(
            row,
            "msg_id",
            |s| MessageId::parse(&s),
            "message_attempt.msg_id",
        )?,
        endpoint_id: parsed(
            row,
            "endpoint_id",
            |s| EndpointId::parse(&s),
            "message_attempt.endpoint_id",
        )?,
        app_id: parsed(
            row,
            "app_id",
            |s| ApplicationId::parse(&s),
            "message_attempt.app_id",
        )?,
        url: row.text("url")?,
        status_code: u16::try_from(row.integer("status_code")?).unwrap_or(0),
        error_class: row.optional_text("error_class")?,
        response_body: row.optional_text("response_body")?,
        // Rows written before durations were kept in microseconds have 0 there.
        duration_us: match u64::try_from(row.integer("duration_us")?).unwrap_or(0) {
            0 => u64::try_from(row.integer("duration_ms")?).unwrap_or(0) * 1000,
            us => us,
        },
        trigger: AttemptTrigger::parse(&trigger)
            .ok_or_else(|| corrupt("message_attempt.trigger", &trigger))?,
        created_at: row.time("created_at")?,
    })
}
