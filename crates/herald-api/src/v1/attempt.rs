//! The attempt log and what can be done with it, following Svix's
//! message-attempt API: attempts by endpoint or message, the messages an
//! endpoint was sent and the endpoints a message was sent to (with their
//! delivery status), one attempt and the removal of its response body, and
//! the requests for more attempts — resend, recover, send-example — plus an
//! endpoint's delivery counts.
//!
//! Requests for attempts never call out from the API process: they mark the
//! delivery due with a manual-attempt flag in the database (the same outbox
//! messages use), and the worker's relay hands them out. So a 202 here is as
//! durable as a 202 for a message.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};
use utoipa::{IntoParams, ToSchema};

use herald_core::{
    AttemptId, ErrorClass, EventTypeName, IdOrUid, MessageId, TaskId, ValidationError,
};
use herald_store::{
    Application, Attempt, AttemptFilter, AttemptTrigger, Delivery, DeliveryFilter, DeliveryStatus,
    Endpoint, Message,
};

use crate::auth::{OrgPrincipal, Principal};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::endpoint::{visible_endpoint, EndpointOut};
use crate::v1::message::{event_types_of, MessageOut};
use crate::v1::{query_channel, visible_app, visible_message};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
            get(list_attempts_by_endpoint),
        )
        .route(
            "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
            get(list_attempts_by_msg),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
            get(list_attempted_messages),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
            get(list_attempted_destinations),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
            get(get_attempt),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
            delete(expunge_attempt_content),
        )
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
            post(resend),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
            post(recover),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
            post(replay_missing),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
            post(send_example),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
            get(endpoint_stats),
        )
}

/// Longest window `recover` accepts, as in Svix.
const MAX_RECOVER_DAYS: i64 = 14;
/// The window of `stats` when `since` is not given.
const DEFAULT_STATS_DAYS: i64 = 28;

/// The sending status of a message or attempt: success 0, pending 1, fail 2,
/// sending 3 (pending = not attempted yet; sending = waiting for a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr, ToSchema)]
#[repr(u8)]
pub enum MessageStatus {
    Success = 0,
    Pending = 1,
    Fail = 2,
    Sending = 3,
}

impl MessageStatus {
    fn text(self) -> MessageStatusText {
        match self {
            Self::Success => MessageStatusText::Success,
            Self::Pending => MessageStatusText::Pending,
            Self::Fail => MessageStatusText::Fail,
            Self::Sending => MessageStatusText::Sending,
        }
    }

    pub(crate) fn parse(value: u8) -> Result<Self, ApiError> {
        Ok(match value {
            0 => Self::Success,
            1 => Self::Pending,
            2 => Self::Fail,
            3 => Self::Sending,
            _ => {
                return Err(ValidationError::new("status", "must be 0, 1, 2 or 3")
                    .at(&["query", "status"])
                    .into())
            }
        })
    }
}

impl From<DeliveryStatus> for MessageStatus {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Success => Self::Success,
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Fail => Self::Fail,
            DeliveryStatus::Sending => Self::Sending,
        }
    }
}

impl From<MessageStatus> for DeliveryStatus {
    fn from(status: MessageStatus) -> Self {
        match status {
            MessageStatus::Success => Self::Success,
            MessageStatus::Pending => Self::Pending,
            MessageStatus::Fail => Self::Fail,
            MessageStatus::Sending => Self::Sending,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatusText {
    Success,
    Pending,
    Fail,
    Sending,
}

/// Why an attempt was made: scheduled 0 (first try or retry), manual 1.
#[derive(Debug, Clone, Copy, Serialize_repr, ToSchema)]
#[repr(u8)]
pub enum MessageAttemptTriggerType {
    Scheduled = 0,
    Manual = 1,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageAttemptOut {
    #[schema(example = "atmpt_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    /// The start of the response body, at most 4 KiB of UTF-8 text: bytes
    /// that are not UTF-8, and NUL, read as U+FFFD ("" once expunged or
    /// without `with_content`).
    pub response: String,
    /// 0 when no response was received (see `errorClass`).
    pub response_status_code: u16,
    pub response_duration_ms: u32,
    /// 0 (success) or 2 (fail).
    pub status: MessageStatus,
    pub status_text: MessageStatusText,
    /// Why the attempt failed (Herald): timeout, connect, dns, tls, blocked,
    /// 3xx, 4xx, 5xx, invalid or other; null on success.
    #[schema(value_type = Option<String>)]
    pub error_class: Option<ErrorClass>,
    pub trigger_type: MessageAttemptTriggerType,
    pub timestamp: DateTime<Utc>,
    /// Herald: the headers the request was sent with (credentials of the
    /// endpoint's own headers redacted); absent for attempts made before
    /// Herald kept them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<BTreeMap<String, String>>,
    /// Herald: the response's headers, at most 4 KiB of them, cookies
    /// redacted; absent without a response, once expunged, or without
    /// `with_content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<BTreeMap<String, String>>,
}

/// Headers as the store keeps them (a JSON object); a value that does not
/// read as one is left out rather than failing the listing.
fn stored_headers(json: Option<String>) -> Option<BTreeMap<String, String>> {
    json.and_then(|json| serde_json::from_str(&json).ok())
}

impl MessageAttemptOut {
    fn from_attempt(attempt: Attempt, with_content: bool) -> Self {
        let status = if (200..300).contains(&attempt.status_code) {
            MessageStatus::Success
        } else {
            MessageStatus::Fail
        };
        let response_duration_ms = attempt.duration_ms();
        Self {
            id: attempt.id.to_string(),
            msg_id: attempt.msg_id.to_string(),
            endpoint_id: attempt.endpoint_id.to_string(),
            url: attempt.url,
            response: attempt
                .response_body
                .filter(|_| with_content)
                .unwrap_or_default(),
            response_status_code: attempt.status_code,
            response_duration_ms,
            status,
            status_text: status.text(),
            error_class: attempt.error_class,
            trigger_type: match attempt.trigger {
                AttemptTrigger::Scheduled => MessageAttemptTriggerType::Scheduled,
                AttemptTrigger::Manual => MessageAttemptTriggerType::Manual,
            },
            timestamp: attempt.created_at,
            request_headers: stored_headers(attempt.request_headers),
            response_headers: stored_headers(attempt.response_headers.filter(|_| with_content)),
        }
    }
}

/// A message with its delivery to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    pub message: MessageOut,
    pub status: MessageStatus,
    pub status_text: MessageStatusText,
    /// When the next attempt is due, while one is.
    pub next_attempt: Option<DateTime<Utc>>,
}

/// An endpoint with the delivery of one message to it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    pub status: MessageStatus,
    pub status_text: MessageStatusText,
    /// When the next attempt is due, while one is.
    pub next_attempt: Option<DateTime<Utc>>,
}

/// The delivery's status and, while it is not finished, its next attempt time.
fn delivery_status(
    delivery: &Delivery,
) -> (MessageStatus, MessageStatusText, Option<DateTime<Utc>>) {
    let status = MessageStatus::from(delivery.status());
    let next = match status {
        MessageStatus::Pending | MessageStatus::Sending => delivery.next_attempt_at,
        MessageStatus::Success | MessageStatus::Fail => None,
    };
    (status, status.text(), next)
}

/// Filters of the attempt listings; `event_types` may be repeated or comma-separated.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptListParams {
    /// Only attempts with this status: 0 success, 2 fail (attempts are never
    /// pending or sending, so 1 and 3 match nothing).
    pub status: Option<u8>,
    /// Only attempts whose status code is in this class: 0 (no response),
    /// 100, 200, 300, 400 or 500.
    pub status_code_class: Option<u16>,
    /// Only attempts of messages sent on this channel.
    pub channel: Option<String>,
    /// Only attempts made before this time.
    pub before: Option<DateTime<Utc>>,
    /// Only attempts made after this time.
    pub after: Option<DateTime<Utc>>,
    /// Include response bodies (default true).
    pub with_content: Option<bool>,
    /// Only attempts of messages of these event types.
    #[param(value_type = Option<Vec<String>>)]
    #[serde(skip)]
    pub event_types: (),
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptEndpointParam {
    /// Only attempts to this endpoint (id or uid).
    pub endpoint_id: Option<String>,
}

/// Filters of an endpoint's attempted messages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptedMessageParams {
    /// Only messages whose delivery to this endpoint has this status.
    pub status: Option<u8>,
    /// Only messages sent on this channel.
    pub channel: Option<String>,
    /// Only messages created before this time.
    pub before: Option<DateTime<Utc>>,
    /// Only messages created after this time.
    pub after: Option<DateTime<Utc>>,
    /// Include payloads (default true).
    pub with_content: Option<bool>,
    /// Only messages of these event types.
    #[param(value_type = Option<Vec<String>>)]
    #[serde(skip)]
    pub event_types: (),
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WithContentParam {
    /// Include the response body (default true).
    pub with_content: Option<bool>,
}

fn parse_status_code_class(class: Option<u16>) -> Result<Option<u16>, ApiError> {
    match class {
        None => Ok(None),
        Some(c @ (0 | 100 | 200 | 300 | 400 | 500)) => Ok(Some(c)),
        Some(_) => Err(ValidationError::new(
            "status_code_class",
            "must be 0, 100, 200, 300, 400 or 500",
        )
        .at(&["query", "status_code_class"])
        .into()),
    }
}

/// Lists attempts under `filter`, with the shared query parameters applied.
async fn list_attempts(
    state: &AppState,
    principal: &Principal,
    app: &Application,
    list: &ListParams,
    params: AttemptListParams,
    raw_query: Option<&str>,
    mut filter: AttemptFilter,
) -> Result<Json<ListResponse<MessageAttemptOut>>, ApiError> {
    let query = list.to_query_newest_first(|k| AttemptId::parse(k).is_ok())?;
    filter.succeeded = match params.status.map(MessageStatus::parse).transpose()? {
        None => None,
        Some(MessageStatus::Success) => Some(true),
        Some(MessageStatus::Fail) => Some(false),
        Some(MessageStatus::Pending | MessageStatus::Sending) => {
            // An attempt is made, so it succeeded or failed: nothing matches.
            return Ok(Json(ListResponse::from_page(
                herald_store::Page {
                    items: Vec::<Attempt>::new(),
                    done: true,
                },
                &query,
                |a| a.id.to_string(),
                |a| MessageAttemptOut::from_attempt(a, false),
            )));
        }
    };
    filter.status_code_class = parse_status_code_class(params.status_code_class)?;
    filter.channel = query_channel(params.channel)?;
    filter.event_types = event_types_of(raw_query)?;
    filter.before = params.before;
    filter.after = params.after;
    let with_content = params.with_content.unwrap_or(true);
    let page = state
        .store
        .list_attempts(principal.tenant_id(), &app.id, &query, &filter)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |a| a.id.to_string(),
        |a| MessageAttemptOut::from_attempt(a, with_content),
    )))
}

/// Lists the attempts made to an endpoint, newest first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
    operation_id = "v1.message-attempt.list-by-endpoint", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
        ListParams, AttemptListParams,
    ),
    responses(
        (status = 200, body = ListResponse<MessageAttemptOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_attempts_by_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    QueryParams(list): QueryParams<ListParams>,
    QueryParams(params): QueryParams<AttemptListParams>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<MessageAttemptOut>>, ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let filter = AttemptFilter {
        endpoint_id: Some(endpoint.id),
        ..AttemptFilter::default()
    };
    list_attempts(
        &state,
        &principal,
        &app,
        &list,
        params,
        raw_query.as_deref(),
        filter,
    )
    .await
}

/// Lists the attempts of a message, newest first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
    operation_id = "v1.message-attempt.list-by-msg", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        ListParams, AttemptListParams, AttemptEndpointParam,
    ),
    responses(
        (status = 200, body = ListResponse<MessageAttemptOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_attempts_by_msg(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, msg_id)): PathParams<(String, String)>,
    QueryParams(list): QueryParams<ListParams>,
    QueryParams(params): QueryParams<AttemptListParams>,
    QueryParams(endpoint_param): QueryParams<AttemptEndpointParam>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<MessageAttemptOut>>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let message = visible_message(&state, &principal, &app, &msg_id).await?;
    let endpoint_id = match endpoint_param.endpoint_id {
        None => None,
        Some(reference) => {
            let reference = IdOrUid::parse("endpoint_id", &reference)
                .map_err(|e| e.at(&["query", "endpoint_id"]))?;
            match state
                .store
                .endpoint(principal.tenant_id(), &app.id, &reference)
                .await?
            {
                Some(endpoint) => Some(endpoint.id),
                // A filter naming no endpoint matches nothing.
                None => {
                    return Ok(Json(ListResponse {
                        data: Vec::new(),
                        iterator: None,
                        prev_iterator: None,
                        done: true,
                    }))
                }
            }
        }
    };
    let filter = AttemptFilter {
        msg_id: Some(message.id),
        endpoint_id,
        ..AttemptFilter::default()
    };
    list_attempts(
        &state,
        &principal,
        &app,
        &list,
        params,
        raw_query.as_deref(),
        filter,
    )
    .await
}

/// Lists the messages sent to an endpoint with their delivery status, newest first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
    operation_id = "v1.message-attempt.list-attempted-messages", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
        ListParams, AttemptedMessageParams,
    ),
    responses(
        (status = 200, body = ListResponse<EndpointMessageOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_attempted_messages(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    QueryParams(list): QueryParams<ListParams>,
    QueryParams(params): QueryParams<AttemptedMessageParams>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<EndpointMessageOut>>, ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let query = list.to_query_newest_first(|k| MessageId::parse(k).is_ok())?;
    let filter = DeliveryFilter {
        status: params
            .status
            .map(MessageStatus::parse)
            .transpose()?
            .map(DeliveryStatus::from),
        channel: query_channel(params.channel)?,
        event_types: event_types_of(raw_query.as_deref())?,
        before: params.before,
        after: params.after,
    };
    let with_content = params.with_content.unwrap_or(true);
    let page = state
        .store
        .list_endpoint_deliveries(
            principal.tenant_id(),
            &app.id,
            &endpoint.id,
            &query,
            &filter,
            crate::list::payloads(params.with_content),
        )
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |d| d.message.id.to_string(),
        |d| {
            let (status, status_text, next_attempt) = delivery_status(&d.delivery);
            EndpointMessageOut {
                message: MessageOut::from_message(d.message, with_content),
                status,
                status_text,
                next_attempt,
            }
        },
    )))
}

/// Lists the endpoints a message was sent to with its delivery status to each.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
    operation_id = "v1.message-attempt.list-attempted-destinations", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        ListParams,
    ),
    responses(
        (status = 200, body = ListResponse<MessageEndpointOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_attempted_destinations(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, msg_id)): PathParams<(String, String)>,
    QueryParams(list): QueryParams<ListParams>,
) -> Result<Json<ListResponse<MessageEndpointOut>>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let message = visible_message(&state, &principal, &app, &msg_id).await?;
    let query = list.to_query(|k| herald_core::EndpointId::parse(k).is_ok())?;
    let page = state
        .store
        .list_message_deliveries(principal.tenant_id(), &app.id, &message.id, &query)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |(d, _): &(Delivery, Endpoint)| d.endpoint_id.to_string(),
        |(d, endpoint)| {
            let (status, status_text, next_attempt) = delivery_status(&d);
            MessageEndpointOut {
                endpoint: endpoint.into(),
                status,
                status_text,
                next_attempt,
            }
        },
    )))
}

async fn visible_attempt(
    state: &AppState,
    principal: &Principal,
    app_id: &str,
    msg_id: &str,
    attempt_id: &str,
) -> Result<(Application, Attempt), ApiError> {
    let app = visible_app(state, principal, app_id).await?;
    let message = visible_message(state, principal, &app, msg_id).await?;
    let attempt_id = AttemptId::parse(attempt_id).map_err(|_| ApiError::NotFound)?;
    let attempt = state
        .store
        .attempt(principal.tenant_id(), &app.id, &message.id, &attempt_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((app, attempt))
}

/// Gets one attempt of a message.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
    operation_id = "v1.message-attempt.get", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        ("attempt_id" = String, Path, description = "The attempt's id"),
        WithContentParam,
    ),
    responses(
        (status = 200, body = MessageAttemptOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_attempt(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, msg_id, attempt_id)): PathParams<(String, String, String)>,
    QueryParams(params): QueryParams<WithContentParam>,
) -> Result<Json<MessageAttemptOut>, ApiError> {
    let (_, attempt) = visible_attempt(&state, &principal, &app_id, &msg_id, &attempt_id).await?;
    Ok(Json(MessageAttemptOut::from_attempt(
        attempt,
        params.with_content.unwrap_or(true),
    )))
}

/// Deletes an attempt's response body; the attempt stays.
#[utoipa::path(
    delete, path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
    operation_id = "v1.message-attempt.expunge-content", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        ("attempt_id" = String, Path, description = "The attempt's id"),
    ),
    responses(
        (status = 204, description = "Response body removed"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn expunge_attempt_content(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams((app_id, msg_id, attempt_id)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.require_org()?;
    let (app, attempt) = visible_attempt(&state, &principal, &app_id, &msg_id, &attempt_id).await?;
    if !state
        .store
        .expunge_attempt_content(tenant_id, &app.id, &attempt.msg_id, &attempt.id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// An empty JSON object (Svix's `EmptyResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EmptyResponse {}

/// Sends a message to an endpoint again (a manual attempt), whatever its
/// delivery state; also to an endpoint the message was never sent to.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
    operation_id = "v1.message-attempt.resend", tag = "Message Attempt",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    responses(
        (status = 202, body = EmptyResponse),
        (status = 400, body = HttpErrorOut, description = "The message's payload was expunged"),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, msg_id, endpoint_id)): PathParams<(String, String, String)>,
) -> Result<(StatusCode, Json<EmptyResponse>), ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let message = visible_message(&state, &principal, &app, &msg_id).await?;
    if message.payload.is_none() {
        return Err(ApiError::bad_request(
            "payload_expunged",
            "the message's payload was expunged, so it cannot be sent again",
        ));
    }
    state
        .store
        .request_manual_attempt(principal.tenant_id(), &app.id, &message.id, &endpoint.id)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(EmptyResponse {})))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverIn {
    /// Messages created at or after this time (at most 14 days ago).
    pub since: DateTime<Utc>,
    /// ... and before this time (default now).
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundTaskStatus {
    Running,
}

#[derive(Debug, Serialize, ToSchema)]
pub enum BackgroundTaskType {
    #[serde(rename = "endpoint.recover")]
    EndpointRecover,
    #[serde(rename = "endpoint.replay")]
    EndpointReplay,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverOut {
    #[schema(example = "qtask_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub status: BackgroundTaskStatus,
    pub task: BackgroundTaskType,
    pub updated_at: DateTime<Utc>,
    /// How many failed deliveries were queued for a manual attempt (Herald).
    pub recovered: u64,
}

/// Sends again every message whose delivery to this endpoint failed, among
/// those created in the window: one manual attempt each.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
    operation_id = "v1.endpoint.recover", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = RecoverIn,
    responses(
        (status = 202, body = RecoverOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn recover(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<RecoverIn>,
) -> Result<(StatusCode, Json<RecoverOut>), ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let now = herald_store::now();
    let until = recovery_window(&input, now)?;
    let recovered = state
        .store
        .request_recovery(
            principal.tenant_id(),
            &app.id,
            &endpoint.id,
            input.since,
            until,
        )
        .await?;
    tracing::info!(endpoint_id = %endpoint.id, recovered, "endpoint recovery queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoverOut {
            id: TaskId::new().to_string(),
            status: BackgroundTaskStatus::Running,
            task: BackgroundTaskType::EndpointRecover,
            updated_at: now,
            recovered,
        }),
    ))
}

/// The end of a `recover` or `replay-missing` window, checked: `since` in
/// the last 14 days and not in the future, `until` (default now) after it.
fn recovery_window(input: &RecoverIn, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let until = input.until.unwrap_or(now);
    if input.since > now {
        return Err(ValidationError::new("since", "must not be in the future").into());
    }
    if input.since < now - chrono::Duration::days(MAX_RECOVER_DAYS) {
        return Err(ValidationError::new(
            "since",
            format!("must be within the last {MAX_RECOVER_DAYS} days"),
        )
        .into());
    }
    if until <= input.since {
        return Err(ValidationError::new("until", "must be after since").into());
    }
    Ok(until)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayOut {
    #[schema(example = "qtask_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub status: BackgroundTaskStatus,
    pub task: BackgroundTaskType,
    pub updated_at: DateTime<Utc>,
    /// How many messages were queued for the endpoint (Herald).
    pub replayed: u64,
}

/// Sends the endpoint every message of the window that it receives (its
/// event types and channels) but was never sent — posted before the endpoint
/// existed, while it was disabled, or under other filters. Messages already
/// sent to it, successfully or not, are not sent again (`recover` is for
/// those). Each is an ordinary delivery, on the endpoint's retry policy.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
    operation_id = "v1.endpoint.replay-missing", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = RecoverIn,
    responses(
        (status = 202, body = ReplayOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn replay_missing(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<RecoverIn>,
) -> Result<(StatusCode, Json<ReplayOut>), ApiError> {
    let (_, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let now = herald_store::now();
    let until = recovery_window(&input, now)?;
    let replayed = state
        .store
        .replay_missing(principal.tenant_id(), &endpoint, input.since, until)
        .await?;
    tracing::info!(endpoint_id = %endpoint.id, replayed, "missing messages replayed");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayOut {
            id: TaskId::new().to_string(),
            status: BackgroundTaskStatus::Running,
            task: BackgroundTaskType::EndpointReplay,
            updated_at: now,
            replayed,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventExampleIn {
    #[schema(example = "user.signup")]
    pub event_type: String,
    /// Which of the schema's `examples` to send (default 0, the first).
    pub example_index: Option<usize>,
}

/// The example payload of an event type: entry `index` of the `examples` of
/// its newest schema, or — when it has none — a generic object naming the type.
fn example_payload(
    event_type: &EventTypeName,
    schemas: Option<&serde_json::Value>,
    index: Option<usize>,
) -> Result<String, ApiError> {
    let examples = schemas
        .and_then(|s| s.as_object())
        .and_then(|versions| {
            versions
                .iter()
                .max_by_key(|(version, _)| version.parse::<u32>().unwrap_or(0))
                .map(|(_, schema)| schema)
        })
        .and_then(|schema| schema.get("examples"))
        .and_then(|examples| examples.as_array())
        .filter(|examples| !examples.is_empty());
    match examples {
        Some(examples) => {
            let index = index.unwrap_or(0);
            let example = examples.get(index).ok_or_else(|| {
                ValidationError::new(
                    "exampleIndex",
                    format!("the event type has {} examples", examples.len()),
                )
            })?;
            if !example.is_object() {
                return Err(ValidationError::new(
                    "exampleIndex",
                    "this example is not a JSON object, so it cannot be a payload",
                )
                .into());
            }
            Ok(example.to_string())
        }
        None if index.unwrap_or(0) > 0 => {
            Err(ValidationError::new("exampleIndex", "the event type has no examples").into())
        }
        None => Ok(serde_json::json!({
            "type": event_type.as_str(),
            "example": true,
            "message": "This is an example event sent by Herald",
        })
        .to_string()),
    }
}

/// Sends an example message of an event type to this endpoint only.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
    operation_id = "v1.endpoint.send-example", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EventExampleIn,
    responses(
        (status = 200, body = MessageOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn send_example(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<EventExampleIn>,
) -> Result<Json<MessageOut>, ApiError> {
    let event_type = EventTypeName::parse(input.event_type.as_str())
        .map_err(|e| e.at(&["body", "eventType"]))?;
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let stored = state
        .store
        .event_type(principal.tenant_id(), &event_type)
        .await?;
    let payload = example_payload(
        &event_type,
        stored.as_ref().and_then(|t| t.schemas.as_ref()),
        input.example_index,
    )?;
    let now = herald_store::now();
    let message = Message {
        id: MessageId::new(),
        app_id: app.id,
        event_id: None,
        event_type,
        channels: None,
        tags: None,
        payload: Some(payload.into_bytes()),
        created_at: now,
        expires_at: now + state.config.payload_retention,
    };
    state
        .store
        .insert_message(principal.tenant_id(), &message, &[endpoint.id])
        .await?;
    crate::metrics::message_accepted();
    Ok(Json(MessageOut::from_message(message, true)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Count messages created at or after this time (default 28 days ago).
    pub since: Option<DateTime<Utc>>,
    /// ... and before this time (default now).
    pub until: Option<DateTime<Utc>>,
}

/// An endpoint's deliveries in a window, by status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
    /// Always 0: Herald does not cancel deliveries.
    pub canceled: u64,
    /// Herald: delivery attempts made in the window (retries included), from
    /// the stats role.
    pub attempts: u64,
    /// Herald: the share of those attempts that succeeded; null without attempts.
    pub success_rate: Option<f64>,
    /// Herald: their latency percentiles in milliseconds (relative error ≤ 1%).
    pub latency_ms: crate::v1::stats::LatencyOut,
}

/// Counts an endpoint's deliveries by status, for messages created in a window.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
    operation_id = "v1.endpoint.get-stats", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
        StatsParams,
    ),
    responses(
        (status = 200, body = EndpointStats),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn endpoint_stats(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    QueryParams(params): QueryParams<StatsParams>,
) -> Result<Json<EndpointStats>, ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let until = params.until.unwrap_or_else(herald_store::now);
    let since = params
        .since
        .unwrap_or(until - chrono::Duration::days(DEFAULT_STATS_DAYS));
    if until <= since {
        return Err(ValidationError::new("until", "must be after since")
            .at(&["query", "until"])
            .into());
    }
    let counts = state
        .store
        .endpoint_delivery_counts(principal.tenant_id(), &app.id, &endpoint.id, since, until)
        .await?;
    let attempts = herald_stats::report(
        state.store.as_ref(),
        principal.tenant_id(),
        &app.id,
        Some(&endpoint.id),
        since,
        until,
        herald_stats::Granularity::Day,
    )
    .await?;
    Ok(Json(EndpointStats {
        success: counts.success,
        pending: counts.pending,
        sending: counts.sending,
        fail: counts.fail,
        canceled: 0,
        attempts: attempts.counts.attempts,
        success_rate: attempts.counts.success_rate(),
        latency_ms: attempts.latency.into(),
    }))
}

#[cfg(test)]
mod tests {
    use herald_core::{ApplicationId, EndpointId};

    use super::*;

    fn attempt(status_code: u16, error_class: Option<ErrorClass>) -> Attempt {
        Attempt {
            id: AttemptId::new(),
            msg_id: MessageId::new(),
            endpoint_id: EndpointId::new(),
            app_id: ApplicationId::new(),
            url: "https://example.com/hook".to_owned(),
            status_code,
            error_class,
            response_body: None,
            request_headers: None,
            response_headers: None,
            duration_us: 1_500,
            trigger: AttemptTrigger::Scheduled,
            created_at: herald_store::now(),
        }
    }

    #[test]
    fn the_error_class_is_output_as_its_name_or_null() {
        let json = |attempt| {
            serde_json::to_value(MessageAttemptOut::from_attempt(attempt, false)).unwrap()
        };
        for class in ErrorClass::ALL {
            let out = json(attempt(0, Some(class)));
            assert_eq!(out["errorClass"], serde_json::json!(class.as_str()));
        }
        let out = json(attempt(503, Some(ErrorClass::Http5xx)));
        assert_eq!(out["errorClass"], serde_json::json!("5xx"));
        let out = json(attempt(200, None));
        assert_eq!(out["errorClass"], serde_json::Value::Null);
    }
}
