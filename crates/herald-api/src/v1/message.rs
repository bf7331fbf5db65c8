//! Messages: what a tenant posts for an application. Creating one records a
//! delivery for every matching endpoint in the same transaction (the outbox the
//! delivery workers drain), publishes their tasks straight to the workers'
//! queue when this process has it, then answers 202.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use herald_core::filter::endpoint_receives;
use herald_core::{
    ApplicationId, ChannelName, EndpointId, EventTypeName, MessageId, TenantId, Uid,
    ValidationError,
};
use herald_store::{Application, Endpoint, Message, MessageFilter, NewMessage};

use crate::auth::{OrgPrincipal, Principal};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{PathParams, QueryParams, RawJsonBody};
use crate::list::{ListParams, ListResponse};
use crate::v1::application::{existing_or_inline_application, ApplicationIn};
use crate::v1::{check_name_list, visible_app, visible_message};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app/{app_id}/msg",
            get(list_messages).post(create_message),
        )
        .route("/api/v1/app/{app_id}/msg/{msg_id}", get(get_message))
        .route(
            "/api/v1/app/{app_id}/msg/{msg_id}/content",
            delete(expunge_message_content),
        )
}

/// Most channels one message may carry, as in Svix.
const MAX_CHANNELS: usize = 5;
const MAX_TAGS: usize = 5;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    #[schema(example = "user.signup")]
    pub event_type: String,
    /// Optional unique identifier of the message within the application.
    pub event_id: Option<String>,
    /// The JSON object to deliver; stored and sent byte for byte.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// Channels endpoints can filter on (1–5).
    pub channels: Option<Vec<String>>,
    /// Free-form labels (1–5).
    pub tags: Option<Vec<String>>,
    /// Days the payload is kept (5–90, default 90).
    pub payload_retention_period: Option<i64>,
    /// Hours the payload is kept (1–2160); exclusive with `payloadRetentionPeriod`.
    pub payload_retention_hours: Option<i64>,
    /// Creates the application when the id or uid in the path does not exist yet.
    pub application: Option<ApplicationIn>,
    /// Scheduled sending is not supported; a value is refused rather than ignored.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deliver_at: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    #[schema(example = "msg_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub event_id: Option<String>,
    pub event_type: String,
    /// The payload as received; `{}` without `with_content`, and
    /// `{"expired": true}` once retention (or an expunge) removed it.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WithContentParams {
    /// Include the payload in the response (default true).
    pub with_content: Option<bool>,
}

/// Filters of `GET …/msg`; `event_types` may be repeated or comma-separated.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageListParams {
    /// Herald: only messages with a delivery (to any endpoint) in this status:
    /// 0 success, 1 pending, 2 fail, 3 sending.
    pub status: Option<u8>,
    /// Only messages sent on this channel.
    pub channel: Option<String>,
    /// Only messages created before this time.
    pub before: Option<DateTime<Utc>>,
    /// Only messages created after this time.
    pub after: Option<DateTime<Utc>>,
    /// Include payloads (default true).
    pub with_content: Option<bool>,
    /// Only these event types.
    #[param(value_type = Option<Vec<String>>)]
    #[serde(skip)]
    pub event_types: (),
}

fn json_constant(text: &'static str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap_or_else(|_| unreachable!("{text} is JSON"))
}

impl MessageOut {
    pub(crate) fn from_message(message: Message, with_content: bool) -> Self {
        let payload = match message.payload {
            _ if !with_content => json_constant("{}"),
            // Removed by retention or an expunge, reported as Svix does.
            None => json_constant(r#"{"expired":true}"#),
            Some(bytes) => String::from_utf8(bytes)
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .unwrap_or_else(|| json_constant("{}")),
        };
        Self {
            id: message.id.to_string(),
            event_id: message.event_id.map(Uid::into_inner),
            event_type: message.event_type.into_inner(),
            payload,
            channels: message
                .channels
                .map(|c| c.into_iter().map(ChannelName::into_inner).collect()),
            tags: message.tags,
            timestamp: message.created_at,
        }
    }
}

/// How long `input`'s payload is kept: what it names, else `default`
/// (`HERALD_PAYLOAD_RETENTION`).
fn retention(input: &MessageIn, default: chrono::Duration) -> Result<chrono::Duration, ApiError> {
    match (
        input.payload_retention_period,
        input.payload_retention_hours,
    ) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            "payloadRetentionHours",
            "cannot be combined with payloadRetentionPeriod",
        )
        .into()),
        (Some(days), None) if (5..=90).contains(&days) => Ok(chrono::Duration::days(days)),
        (Some(_), None) => Err(ValidationError::new(
            "payloadRetentionPeriod",
            "must be between 5 and 90 days",
        )
        .into()),
        (None, Some(hours)) if (1..=2160).contains(&hours) => Ok(chrono::Duration::hours(hours)),
        (None, Some(_)) => Err(ValidationError::new(
            "payloadRetentionHours",
            "must be between 1 and 2160 hours",
        )
        .into()),
        (None, None) => Ok(default),
    }
}

fn parse_channels(channels: Option<Vec<String>>) -> Result<Option<Vec<ChannelName>>, ApiError> {
    crate::v1::parse_channel_list(channels, MAX_CHANNELS)
}

fn parse_tags(tags: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(tags) = tags else { return Ok(None) };
    check_name_list("tags", &tags, Some(MAX_TAGS))?;
    for tag in &tags {
        // Tags follow the same character rules as channels.
        ChannelName::parse(tag.as_str()).map_err(|e| e.at(&["body", "tags"]))?;
    }
    Ok(Some(tags))
}

/// All values of `event_types` in a query string, repeated or comma-separated.
pub(crate) fn event_types_of(query: Option<&str>) -> Result<Option<Vec<EventTypeName>>, ApiError> {
    let mut types = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "event_types" || key == "event_types[]" {
            for name in value.split(',').filter(|n| !n.is_empty()) {
                types
                    .push(EventTypeName::parse(name).map_err(|e| e.at(&["query", "event_types"]))?);
            }
        }
    }
    Ok((!types.is_empty()).then_some(types))
}

/// Creates a message and queues its delivery to every matching endpoint.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/msg", operation_id = "v1.message.create", tag = "Message",
    params(("app_id" = String, Path, description = "The application's id or uid"), WithContentParams),
    request_body = MessageIn,
    responses(
        (status = 202, body = MessageOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 413, body = HttpErrorOut, description = "The request body or the payload is over the server's limit"),
        (status = 422, body = HttpValidationError),
        (status = 429, body = HttpErrorOut, description = "The tenant is over its message rate (HERALD_TENANT_MESSAGE_RATE); `Retry-After` says when to try again"),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_message(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(app_id): PathParams<String>,
    QueryParams(params): QueryParams<WithContentParams>,
    RawJsonBody(input): RawJsonBody<MessageIn>,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    state.message_rate.admit(tenant_id).await?;
    let size = input.payload.get().len();
    if size > state.config.limits.max_payload_bytes {
        return Err(ApiError::PayloadOverLimit {
            size,
            limit: state.config.limits.max_payload_bytes,
        });
    }
    if input.deliver_at.is_some() {
        return Err(
            ValidationError::new("deliverAt", "scheduled delivery is not supported").into(),
        );
    }
    let event_type = EventTypeName::parse(input.event_type.as_str())
        .map_err(|e| e.at(&["body", "eventType"]))?;
    let event_id = input
        .event_id
        .as_deref()
        .map(|id| Uid::parse(id).map_err(|e| e.at(&["body", "eventId"])))
        .transpose()?;
    if !input.payload.get().trim_start().starts_with('{') {
        return Err(ValidationError::new("payload", "must be a JSON object").into());
    }
    let retention = retention(&input, state.config.payload_retention)?;
    let channels = parse_channels(input.channels.clone())?;
    let tags = parse_tags(input.tags.clone())?;

    // The common case, an application named by id, is read with the other
    // messages arriving meanwhile; a uid (or an inline application) the
    // one-by-one way.
    let batched = match ApplicationId::looks_like(&app_id) {
        true => match ApplicationId::parse(&app_id) {
            Ok(id) => state.accepter.candidates(tenant_id, &id).await?,
            Err(_) => None,
        },
        false => None,
    };
    let (app, candidates) = match batched {
        Some(found) => found,
        None => {
            let app = existing_or_inline_application(&state, tenant_id, &app_id, input.application)
                .await?;
            let candidates = state.store.enabled_endpoints(tenant_id, &app.id).await?;
            (app, candidates)
        }
    };
    let post = Post {
        event_type,
        event_id,
        channels,
        tags,
        stored: input.payload.get().as_bytes().to_vec(),
        payload: input.payload,
        retention,
    };
    let Some(message) = accept_message(&state, tenant_id, app, candidates, post).await? else {
        return Err(ApiError::conflict(
            "a message with this eventId already exists in this application",
        ));
    };
    let with_content = params.with_content.unwrap_or(true);
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageOut::from_message(message, with_content)),
    ))
}

/// A validated message to store, as `POST …/msg` and `/ingest` make it.
pub(crate) struct Post {
    pub event_type: EventTypeName,
    pub event_id: Option<Uid>,
    pub channels: Option<Vec<ChannelName>>,
    pub tags: Option<Vec<String>>,
    /// The bytes stored, and sent: exactly as received.
    pub stored: Vec<u8>,
    /// The same JSON, for the workers' tasks; without any whitespace around
    /// it that `stored` has (then the workers send the stored bytes).
    pub payload: Box<RawValue>,
    /// How long the payload is kept.
    pub retention: chrono::Duration,
}

/// Stores `post` as a message of `app` with a delivery to each endpoint
/// among `candidates` (its enabled endpoints) that receives it, in the
/// accept batcher's next transaction; the message once committed, or `None`
/// when its `eventId` is taken in the application (nothing is stored then).
pub(crate) async fn accept_message(
    state: &AppState,
    tenant_id: &TenantId,
    app: Application,
    candidates: Vec<Endpoint>,
    post: Post,
) -> Result<Option<Message>, ApiError> {
    let (targets, endpoint_versions): (Vec<EndpointId>, Vec<_>) = candidates
        .into_iter()
        .filter(|ep| {
            endpoint_receives(
                ep.event_types.as_deref(),
                ep.channels.as_deref(),
                &post.event_type,
                post.channels.as_deref(),
            )
        })
        .map(|ep| (ep.id, ep.updated_at))
        .unzip();
    let now = herald_store::now();
    let message = Message {
        id: MessageId::new(),
        app_id: app.id,
        event_id: post.event_id,
        event_type: post.event_type,
        channels: post.channels,
        tags: post.tags,
        payload: Some(post.stored),
        created_at: now,
        expires_at: now + post.retention,
    };
    let endpoints = targets.len();
    let new = NewMessage {
        tenant_id: tenant_id.clone(),
        message: message.clone(),
        endpoint_ids: targets,
    };
    let accepted = crate::accept::Accepted {
        new,
        payload: post.payload,
        endpoint_versions,
    };
    if !state.accepter.accept(accepted).await? {
        return Ok(None);
    }
    tracing::debug!(msg_id = %message.id, endpoints, "message accepted");
    crate::metrics::message_accepted();
    Ok(Some(message))
}

/// Lists an application's messages, newest first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/msg", operation_id = "v1.message.list", tag = "Message",
    params(("app_id" = String, Path, description = "The application's id or uid"), ListParams, MessageListParams),
    responses(
        (status = 200, body = ListResponse<MessageOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    QueryParams(list): QueryParams<ListParams>,
    QueryParams(params): QueryParams<MessageListParams>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<MessageOut>>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let query = list.to_query_newest_first(|k| MessageId::parse(k).is_ok())?;
    let filter = MessageFilter {
        status: params
            .status
            .map(crate::v1::attempt::MessageStatus::parse)
            .transpose()?
            .map(Into::into),
        channel: crate::v1::query_channel(params.channel)?,
        event_types: event_types_of(raw_query.as_deref())?,
        before: params.before,
        after: params.after,
    };
    let with_content = params.with_content.unwrap_or(true);
    let page = state
        .store
        .list_messages(
            principal.tenant_id(),
            &app.id,
            &query,
            &filter,
            crate::list::payloads(params.with_content),
        )
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |m| m.id.to_string(),
        |m| MessageOut::from_message(m, with_content),
    )))
}

/// Gets a message by id or eventId.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/msg/{msg_id}", operation_id = "v1.message.get", tag = "Message",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
        WithContentParams,
    ),
    responses(
        (status = 200, body = MessageOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, msg_id)): PathParams<(String, String)>,
    QueryParams(params): QueryParams<WithContentParams>,
) -> Result<Json<MessageOut>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let message = visible_message(&state, &principal, &app, &msg_id).await?;
    Ok(Json(MessageOut::from_message(
        message,
        params.with_content.unwrap_or(true),
    )))
}

/// Deletes a message's payload; the message and its attempts stay.
#[utoipa::path(
    delete, path = "/api/v1/app/{app_id}/msg/{msg_id}/content", operation_id = "v1.message.expunge-content", tag = "Message",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("msg_id" = String, Path, description = "The message's id or eventId"),
    ),
    responses(
        (status = 204, description = "Payload removed"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn expunge_message_content(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams((app_id, msg_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.require_org()?;
    let app = visible_app(&state, &principal, &app_id).await?;
    let message = visible_message(&state, &principal, &app, &msg_id).await?;
    if !state
        .store
        .expunge_message_content(tenant_id, &app.id, &message.id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
