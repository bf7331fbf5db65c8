//! Dead letters: the deliveries that exhausted their retry schedule (state
//! `dead` in the database, which is the dead-letter view — the bounded broker
//! queue `herald.dead` is only drained into it), listed per application or
//! endpoint and redriven.
//!
//! A redrive goes through the outbox like resend and recover: each selected
//! delivery is made due now with a manual-attempt request, and that attempt
//! starts a fresh retry schedule (the attempt count restarts at 1), so a
//! redriven delivery that keeps failing is retried again and dies again.
//! One call redrives at most [`MAX_REDRIVE_PER_CALL`], in transactions of
//! [`REDRIVE_BATCH`]; `done: false` says more match, and calling again goes on.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_core::{EndpointId, ErrorClass, EventTypeName, IdOrUid, MessageId, ValidationError};
use herald_store::{
    dead_letter_key, parse_dead_letter_key, Application, DeadDelivery, DeadLetterFilter,
};

use crate::auth::Principal;
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{OptionalJsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::endpoint::visible_endpoint;
use crate::v1::{check_name_list, visible_app};
use crate::AppState;

/// Dead deliveries one transaction of a redrive moves.
pub const REDRIVE_BATCH: u16 = 1_000;
/// Dead deliveries one redrive call moves at most.
pub const MAX_REDRIVE_PER_CALL: u64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/app/{app_id}/dead-letter", get(list_dead_letters))
        .route(
            "/api/v1/app/{app_id}/dead-letter/redrive",
            post(redrive_dead_letters),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/dead-letter",
            get(list_endpoint_dead_letters),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/dead-letter/redrive",
            post(redrive_endpoint_dead_letters),
        )
}

/// A dead delivery: a message that could not be delivered to an endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterOut {
    #[schema(example = "msg_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub msg_id: String,
    /// The message's `eventId`, if it has one.
    pub msg_event_id: Option<String>,
    pub event_type: String,
    #[schema(example = "ep_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub endpoint_id: String,
    /// Attempts its retry schedule made.
    pub attempts: u32,
    /// Status code of the last attempt (0: no response); null when no
    /// attempt was recorded.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed: timeout, connect, dns, tls, blocked,
    /// 3xx, 4xx, 5xx, invalid or other.
    #[schema(value_type = Option<String>)]
    pub last_error_class: Option<ErrorClass>,
    /// When the delivery went dead.
    pub died_at: DateTime<Utc>,
    /// When the message was created (what `before` and `after` filter on).
    pub msg_created_at: DateTime<Utc>,
}

impl From<DeadDelivery> for DeadLetterOut {
    fn from(dead: DeadDelivery) -> Self {
        Self {
            msg_id: dead.msg_id.to_string(),
            msg_event_id: dead.msg_event_id.map(|uid| uid.as_str().to_owned()),
            event_type: dead.event_type.as_str().to_owned(),
            endpoint_id: dead.endpoint_id.to_string(),
            attempts: dead.attempts,
            last_status_code: dead.last_status_code,
            last_error_class: dead.last_error_class,
            died_at: dead.died_at,
            msg_created_at: dead.msg_created_at,
        }
    }
}

/// Filters of the dead-letter listings; `event_types` (or `eventTypes`) may
/// be repeated or comma-separated.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterListParams {
    /// Only dead letters of messages created before this time (RFC 3339).
    pub before: Option<DateTime<Utc>>,
    /// Only dead letters of messages created after this time (RFC 3339).
    pub after: Option<DateTime<Utc>>,
    /// Only dead letters of messages of these event types.
    #[param(value_type = Option<Vec<String>>)]
    #[serde(skip)]
    pub event_types: (),
}

/// Which dead letters to redrive; every filter given must match, and an empty
/// body (or `{}`) redrives all of the application's (or endpoint's).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedriveIn {
    /// Only these messages (ids or eventIds, 1 to 1000).
    pub msg_ids: Option<Vec<String>>,
    /// Only messages of these event types (1 to 1000).
    pub event_types: Option<Vec<String>>,
    /// Only messages created before this time (RFC 3339).
    pub before: Option<DateTime<Utc>>,
    /// Only messages created after this time (RFC 3339).
    pub after: Option<DateTime<Utc>>,
    /// Only deliveries to this endpoint (id or uid); on an endpoint's route,
    /// that endpoint if given.
    pub endpoint_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedriveOut {
    /// How many dead deliveries were made due for a fresh schedule.
    pub redriven: u64,
    /// False when more dead letters match than one call redrives
    /// (10,000): call again to go on.
    pub done: bool,
}

/// The `event_types` filter of a listing's query string: `event_types`,
/// `event_types[]` or `eventTypes`, repeated or comma-separated.
fn query_event_types(query: Option<&str>) -> Result<Option<Vec<EventTypeName>>, ApiError> {
    let mut types = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if matches!(&*key, "event_types" | "event_types[]" | "eventTypes") {
            for name in value.split(',').filter(|n| !n.is_empty()) {
                let name = EventTypeName::parse(name).map_err(|e| e.at(&["query", &key]))?;
                types.push(name);
            }
        }
    }
    Ok((!types.is_empty()).then_some(types))
}

/// A time window's bounds must leave room between them.
fn check_window(
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
    loc: &str,
) -> Result<(), ApiError> {
    match (before, after) {
        (Some(before), Some(after)) if before <= after => {
            Err(ValidationError::new("before", "must be later than after")
                .at(&[loc, "before"])
                .into())
        }
        _ => Ok(()),
    }
}

async fn list(
    state: &AppState,
    principal: &Principal,
    app: &Application,
    list: &ListParams,
    params: DeadLetterListParams,
    raw_query: Option<&str>,
    endpoint_id: Option<EndpointId>,
) -> Result<Json<ListResponse<DeadLetterOut>>, ApiError> {
    let query = list.to_query_newest_first(|k| parse_dead_letter_key(k).is_some())?;
    check_window(params.before, params.after, "query")?;
    let filter = DeadLetterFilter {
        endpoint_id,
        msg_ids: None,
        event_types: query_event_types(raw_query)?,
        before: params.before,
        after: params.after,
    };
    let page = state
        .store
        .list_dead_letters(principal.tenant_id(), &app.id, &query, &filter)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |d| dead_letter_key(&d.msg_id, &d.endpoint_id),
        DeadLetterOut::from,
    )))
}

/// Lists an application's dead letters, newest message first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/dead-letter",
    operation_id = "v1.dead-letter.list", tag = "Dead Letter",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ListParams, DeadLetterListParams,
    ),
    responses(
        (status = 200, body = ListResponse<DeadLetterOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    QueryParams(list_params): QueryParams<ListParams>,
    QueryParams(params): QueryParams<DeadLetterListParams>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<DeadLetterOut>>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    list(
        &state,
        &principal,
        &app,
        &list_params,
        params,
        raw_query.as_deref(),
        None,
    )
    .await
}

/// Lists an endpoint's dead letters, newest message first.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/dead-letter",
    operation_id = "v1.dead-letter.list-by-endpoint", tag = "Dead Letter",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
        ListParams, DeadLetterListParams,
    ),
    responses(
        (status = 200, body = ListResponse<DeadLetterOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_endpoint_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    QueryParams(list_params): QueryParams<ListParams>,
    QueryParams(params): QueryParams<DeadLetterListParams>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ListResponse<DeadLetterOut>>, ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    list(
        &state,
        &principal,
        &app,
        &list_params,
        params,
        raw_query.as_deref(),
        Some(endpoint.id),
    )
    .await
}

/// Turns a redrive body into a store filter, refusing (422, naming the
/// field) anything malformed or naming what the caller cannot see, before
/// anything is written. `scoped` is the endpoint of an endpoint's route.
async fn redrive_filter(
    state: &AppState,
    principal: &Principal,
    app: &Application,
    input: RedriveIn,
    scoped: Option<EndpointId>,
) -> Result<DeadLetterFilter, ApiError> {
    let invalid = |field: &str, msg: &str| -> ApiError {
        ValidationError::new(field, msg.to_owned())
            .at(&["body", field])
            .into()
    };
    check_window(input.before, input.after, "body")?;
    let event_types = match input.event_types {
        None => None,
        Some(names) => {
            check_name_list("eventTypes", &names, None)?;
            let parsed = names
                .into_iter()
                .map(|name| EventTypeName::parse(name).map_err(|_| ()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| invalid("eventTypes", "holds a name that is not an event type"))?;
            Some(parsed)
        }
    };
    let msg_ids = match input.msg_ids {
        None => None,
        Some(refs) => {
            check_name_list("msgIds", &refs, None)?;
            let mut ids = Vec::with_capacity(refs.len());
            for reference in refs {
                if let Ok(id) = reference.parse::<MessageId>() {
                    ids.push(id);
                    continue;
                }
                let by_event_id = IdOrUid::parse("msgIds", &reference).map_err(|_| {
                    invalid("msgIds", "holds a value that is no message id or eventId")
                })?;
                // An eventId that names no message matches nothing.
                if let Some(message) = state
                    .store
                    .message(principal.tenant_id(), &app.id, &by_event_id)
                    .await?
                {
                    ids.push(message.id);
                }
            }
            Some(ids)
        }
    };
    let endpoint_id = match (input.endpoint_id, scoped) {
        (None, scoped) => scoped,
        (Some(reference), scoped) => {
            let endpoint_ref = IdOrUid::parse("endpointId", &reference)
                .map_err(|_| invalid("endpointId", "is no endpoint id or uid"))?;
            let endpoint = state
                .store
                .endpoint(principal.tenant_id(), &app.id, &endpoint_ref)
                .await?
                .ok_or_else(|| invalid("endpointId", "names no endpoint of this application"))?;
            if scoped.as_ref().is_some_and(|s| *s != endpoint.id) {
                return Err(invalid("endpointId", "is not the endpoint of the path"));
            }
            Some(endpoint.id)
        }
    };
    Ok(DeadLetterFilter {
        endpoint_id,
        msg_ids,
        event_types,
        before: input.before,
        after: input.after,
    })
}

/// Redrives up to [`MAX_REDRIVE_PER_CALL`] dead letters in batches.
async fn redrive(
    state: &AppState,
    principal: &Principal,
    app: &Application,
    filter: &DeadLetterFilter,
) -> Result<(StatusCode, Json<RedriveOut>), ApiError> {
    let mut redriven = 0;
    let done = loop {
        let moved = state
            .store
            .redrive_dead_letters(principal.tenant_id(), &app.id, filter, REDRIVE_BATCH)
            .await?;
        redriven += moved;
        if moved < u64::from(REDRIVE_BATCH) {
            break true;
        }
        if redriven >= MAX_REDRIVE_PER_CALL {
            break false;
        }
    };
    tracing::info!(app_id = %app.id, redriven, done, "dead letters redriven");
    Ok((StatusCode::ACCEPTED, Json(RedriveOut { redriven, done })))
}

/// Redrives an application's dead letters: each matching one is made due now
/// for a fresh retry schedule. An empty body redrives all of them.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/dead-letter/redrive",
    operation_id = "v1.dead-letter.redrive", tag = "Dead Letter",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = RedriveIn,
    responses(
        (status = 202, body = RedriveOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn redrive_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    OptionalJsonBody(input): OptionalJsonBody<RedriveIn>,
) -> Result<(StatusCode, Json<RedriveOut>), ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let filter = redrive_filter(&state, &principal, &app, input, None).await?;
    redrive(&state, &principal, &app, &filter).await
}

/// Redrives an endpoint's dead letters, like the application's route.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/dead-letter/redrive",
    operation_id = "v1.dead-letter.redrive-by-endpoint", tag = "Dead Letter",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = RedriveIn,
    responses(
        (status = 202, body = RedriveOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn redrive_endpoint_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<RedriveIn>,
) -> Result<(StatusCode, Json<RedriveOut>), ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let filter = redrive_filter(&state, &principal, &app, input, Some(endpoint.id)).await?;
    redrive(&state, &principal, &app, &filter).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_read_under_each_spelling_and_refused_when_malformed() {
        let types = query_event_types(Some("eventTypes=a.b&event_types=c.d,e.f&event_types[]=g"))
            .unwrap()
            .unwrap();
        let names: Vec<_> = types.iter().map(EventTypeName::as_str).collect();
        assert_eq!(names, ["a.b", "c.d", "e.f", "g"]);
        assert!(query_event_types(Some("limit=5")).unwrap().is_none());
        assert!(query_event_types(Some("eventTypes=not%20a%20name")).is_err());
    }

    #[test]
    fn a_window_whose_before_is_not_after_its_after_is_refused() {
        let t = Utc::now();
        assert!(check_window(Some(t), Some(t), "body").is_err());
        assert!(check_window(Some(t), Some(t - chrono::Duration::seconds(1)), "body").is_ok());
        assert!(check_window(None, Some(t), "query").is_ok());
    }
}
