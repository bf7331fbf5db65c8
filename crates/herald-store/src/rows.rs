//! Rows read back into records, written once for both databases ([`Row`]
//! reads a column the same way on either).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use herald_core::{
    ChannelName, EndpointHeaders, EndpointId, EndpointUrl, ErrorClass, EventTypeFilter,
    EventTypeName, FeatureFlag, Metadata, Uid, ValidationError,
};

use crate::db::{corrupt, Row};
use crate::main_key::{self, MainKeys};
use crate::model::{
    ApiKey, Application, Attempt, AttemptTrigger, DeadDelivery, Delivery, DeliveryState, Endpoint,
    EndpointHealth, EndpointSecrets, EventType, Message, StoredSecrets, Tenant,
};
use crate::StoreResult;

fn json<T: DeserializeOwned>(row: &Row, column: &str, what: &str) -> StoreResult<T> {
    row.optional_json(column, what)?
        .ok_or_else(|| corrupt(what, "is NULL"))
}

/// A JSON list of names, each read back with `parse`.
pub(crate) fn names<T>(
    row: &Row,
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

/// A typed id column.
fn id<T: std::str::FromStr>(row: &Row, column: &str, what: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    parsed(row, column, |s| s.parse::<T>(), what)
}

pub(crate) fn parsed<T, E: std::fmt::Display>(
    row: &Row,
    column: &str,
    parse: impl Fn(String) -> Result<T, E>,
    what: &str,
) -> StoreResult<T> {
    parse(row.text(column)?).map_err(|e| corrupt(what, e))
}

fn optional_parsed<T, E: std::fmt::Display>(
    row: &Row,
    column: &str,
    parse: impl Fn(String) -> Result<T, E>,
    what: &str,
) -> StoreResult<Option<T>> {
    row.get::<Option<String>>(column)?
        .map(|text| parse(text).map_err(|e| corrupt(what, e)))
        .transpose()
}

fn throttle(row: &Row) -> StoreResult<Option<u16>> {
    Ok(row
        .optional_integer("throttle_rate")?
        .and_then(|v| u16::try_from(v).ok()))
}

pub(crate) fn tenant_from_row(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: id(row, "id", "tenant.id")?,
        name: row.text("name")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn api_key_from_row(row: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: id(row, "id", "api_key.id")?,
        tenant_id: id(row, "tenant_id", "api_key.tenant_id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        key_hash: row.get("key_hash")?,
        created_at: row.time("created_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}

pub(crate) fn application_from_row(row: &Row) -> StoreResult<Application> {
    Ok(Application {
        id: id(row, "id", "application.id")?,
        uid: optional_parsed(row, "uid", Uid::from_stored, "application.uid")?,
        name: row.text("name")?,
        metadata: json::<Metadata>(row, "metadata", "application.metadata")?,
        throttle_rate: throttle(row)?,
        retry_policy: row.optional_json("retry_policy", "application.retry_policy")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn event_type_from_row(row: &Row) -> StoreResult<EventType> {
    Ok(EventType {
        name: parsed(row, "name", EventTypeName::from_stored, "event_type.name")?,
        description: row.text("description")?,
        archived: row.get("archived")?,
        deprecated: row.get("deprecated")?,
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

/// An endpoint, its secrets and sensitive header values opened with `keys`.
pub(crate) fn endpoint_from_row(row: &Row, keys: &MainKeys) -> StoreResult<Endpoint> {
    let endpoint_id: EndpointId = id(row, "id", "endpoint.id")?;
    let secrets = keys
        .open_json(
            &main_key::secrets_context(endpoint_id.as_str()),
            json(row, "secrets", "endpoint.secrets")?,
        )
        .map_err(|e| corrupt("endpoint.secrets", e))?;
    let secrets: StoredSecrets =
        serde_json::from_value(secrets).map_err(|e| corrupt("endpoint.secrets", e))?;
    let stored: BTreeMap<String, serde_json::Value> = json(row, "headers", "endpoint.headers")?;
    let mut headers = BTreeMap::new();
    for (name, value) in stored {
        let value = keys
            .open_json(
                &main_key::header_context(endpoint_id.as_str(), &name),
                value,
            )
            .map_err(|e| corrupt("endpoint.headers", e))?;
        let serde_json::Value::String(value) = value else {
            return Err(corrupt("endpoint.headers", format!("{name} is not text")));
        };
        headers.insert(name, value);
    }
    let headers = EndpointHeaders::parse(headers).map_err(|e| corrupt("endpoint.headers", e))?;
    Ok(Endpoint {
        id: endpoint_id,
        app_id: id(row, "app_id", "endpoint.app_id")?,
        uid: optional_parsed(row, "uid", Uid::from_stored, "endpoint.uid")?,
        url: parsed(row, "url", EndpointUrl::from_stored, "endpoint.url")?,
        description: row.text("description")?,
        version: u16::try_from(row.integer("version")?).unwrap_or(1),
        disabled: row.get("disabled")?,
        event_types: names(
            row,
            "event_types",
            EventTypeFilter::from_stored,
            "endpoint.event_types",
        )?,
        channels: names(row, "channels", ChannelName::parse, "endpoint.channels")?,
        metadata: json(row, "metadata", "endpoint.metadata")?,
        throttle_rate: throttle(row)?,
        headers,
        secrets: EndpointSecrets::try_from(secrets).map_err(|e| corrupt("endpoint.secrets", e))?,
        signature_scheme: row
            .optional_json("signature_scheme", "endpoint.signature_scheme")?
            .unwrap_or_default(),
        retry_policy: row.optional_json("retry_policy", "endpoint.retry_policy")?,
        app_retry_policy: row.optional_json("app_retry_policy", "application.retry_policy")?,
        health: health_from_row(row)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// An endpoint's health columns.
pub(crate) fn health_from_row(row: &Row) -> StoreResult<EndpointHealth> {
    Ok(EndpointHealth {
        consecutive_failures: u32::try_from(row.integer("consecutive_failures")?)
            .unwrap_or(u32::MAX),
        failing_since: row.optional_time("failing_since")?,
        breaker_open_until: row.optional_time("breaker_open_until")?,
        disabled_at: row.optional_time("disabled_at")?,
        disabled_reason: row.get("disabled_reason")?,
    })
}

pub(crate) fn message_from_row(row: &Row) -> StoreResult<Message> {
    Ok(Message {
        id: id(row, "id", "message.id")?,
        app_id: id(row, "app_id", "message.app_id")?,
        event_id: optional_parsed(row, "event_id", Uid::from_stored, "message.event_id")?,
        event_type: parsed(
            row,
            "event_type",
            EventTypeName::from_stored,
            "message.event_type",
        )?,
        channels: names(row, "channels", ChannelName::parse, "message.channels")?,
        tags: row.optional_json("tags", "message.tags")?,
        payload: row.get("payload")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(crate) fn delivery_from_row(row: &Row) -> StoreResult<Delivery> {
    let state = row.text("state")?;
    Ok(Delivery {
        msg_id: id(row, "msg_id", "delivery.msg_id")?,
        endpoint_id: id(row, "endpoint_id", "delivery.endpoint_id")?,
        app_id: id(row, "app_id", "delivery.app_id")?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery.state", &state))?,
        attempts: u32::try_from(row.integer("attempts")?).unwrap_or(0),
        next_attempt_at: row.optional_time("next_attempt_at")?,
        manual: row.get("manual")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn attempt_from_row(row: &Row) -> StoreResult<Attempt> {
    let trigger = row.text("trigger")?;
    Ok(Attempt {
        id: id(row, "id", "message_attempt.id")?,
        msg_id: id(row, "msg_id", "message_attempt.msg_id")?,
        endpoint_id: id(row, "endpoint_id", "message_attempt.endpoint_id")?,
        app_id: id(row, "app_id", "message_attempt.app_id")?,
        url: row.text("url")?,
        status_code: u16::try_from(row.integer("status_code")?).unwrap_or(0),
        // An unknown name reads as `Other`: see `Attempt::error_class`.
        error_class: row
            .get::<Option<String>>("error_class")?
            .map(|name| ErrorClass::from_stored(&name)),
        response_body: row.get("response_body")?,
        request_headers: row.get("request_headers")?,
        response_headers: row.get("response_headers")?,
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

pub(crate) fn dead_delivery_from_row(row: &Row) -> StoreResult<DeadDelivery> {
    Ok(DeadDelivery {
        msg_id: id(row, "msg_id", "delivery.msg_id")?,
        msg_event_id: optional_parsed(row, "event_id", Uid::from_stored, "message.event_id")?,
        event_type: parsed(
            row,
            "event_type",
            EventTypeName::from_stored,
            "message.event_type",
        )?,
        endpoint_id: id(row, "endpoint_id", "delivery.endpoint_id")?,
        attempts: u32::try_from(row.integer("attempts")?).unwrap_or(0),
        last_status_code: row
            .optional_integer("last_status_code")?
            .map(|code| u16::try_from(code).unwrap_or(0)),
        last_error_class: row
            .get::<Option<String>>("last_error_class")?
            .map(|name| ErrorClass::from_stored(&name)),
        died_at: row.time("died_at")?,
        msg_created_at: row.time("msg_created_at")?,
    })
}
