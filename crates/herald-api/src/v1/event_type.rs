//! Event types: the catalogue of events a tenant sends, which endpoints filter on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_core::{EventTypeName, FeatureFlag, ValidationError};
use herald_store::EventType;

use crate::auth::{OrgPrincipal, Principal};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::nullable;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/event-type",
            get(list_event_types).post(create_event_type),
        )
        .route(
            "/api/v1/event-type/{event_type_name}",
            get(get_event_type)
                .put(update_event_type)
                .patch(patch_event_type)
                .delete(delete_event_type),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    #[schema(example = "user.signup")]
    pub name: String,
    #[schema(example = "A user has signed up")]
    pub description: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub deprecated: bool,
    pub feature_flag: Option<String>,
    /// JSON schemas of the payload, keyed by version.
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeUpdate {
    pub description: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub deprecated: bool,
    pub feature_flag: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypePatch {
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub feature_flag: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>, nullable)]
    pub schemas: Option<Option<serde_json::Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    pub feature_flag: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventTypeListParams {
    /// Include archived event types.
    #[serde(default)]
    pub include_archived: bool,
    /// Include the schemas of each event type.
    #[serde(default)]
    pub with_content: bool,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventTypeDeleteParams {
    /// Delete the event type for good instead of archiving it.
    #[serde(default)]
    pub expunge: bool,
}

impl EventTypeOut {
    fn from_event_type(event_type: EventType, with_schemas: bool) -> Self {
        Self {
            name: event_type.name.into_inner(),
            description: event_type.description,
            archived: event_type.archived,
            deprecated: event_type.deprecated,
            feature_flag: event_type.feature_flag.map(|f| f.as_str().to_owned()),
            schemas: event_type.schemas.filter(|_| with_schemas),
            created_at: event_type.created_at,
            updated_at: event_type.updated_at,
        }
    }
}

impl From<EventType> for EventTypeOut {
    fn from(event_type: EventType) -> Self {
        Self::from_event_type(event_type, true)
    }
}

fn parse_schemas(
    schemas: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, ApiError> {
    match schemas {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(versions)) => {
            if let Some((version, _)) = versions.iter().find(|(_, schema)| !schema.is_object()) {
                return Err(
                    ValidationError::new("schemas", "each schema must be a JSON object")
                        .at(&["body", "schemas", version])
                        .into(),
                );
            }
            Ok(Some(serde_json::Value::Object(versions)))
        }
        Some(_) => Err(ValidationError::new(
            "schemas",
            "must be an object mapping versions to JSON schemas",
        )
        .into()),
    }
}

fn parse_description(description: String) -> Result<String, ApiError> {
    if description.len() > 4096 {
        return Err(
            ValidationError::new("description", "must be at most 4096 characters long").into(),
        );
    }
    Ok(description)
}

fn parse_path_name(name: &str) -> Result<EventTypeName, ApiError> {
    EventTypeName::parse(name).map_err(|e| e.at(&["path", "event_type_name"]).into())
}

fn event_type_from_update(
    name: EventTypeName,
    input: EventTypeUpdate,
) -> Result<EventType, ApiError> {
    let now = herald_store::now();
    Ok(EventType {
        name,
        description: parse_description(input.description)?,
        archived: input.archived,
        deprecated: input.deprecated,
        feature_flag: input.feature_flag.map(FeatureFlag::parse).transpose()?,
        schemas: parse_schemas(input.schemas)?,
        created_at: now,
        updated_at: now,
    })
}

/// Writes an event type unless another request changed it since it was read.
async fn save_event_type(
    state: &AppState,
    tenant_id: &herald_core::TenantId,
    event_type: &EventType,
    expected_updated_at: DateTime<Utc>,
) -> Result<(), ApiError> {
    if state
        .store
        .update_event_type(tenant_id, event_type, expected_updated_at)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "the event type was changed by another request; retry",
        ))
    }
}

/// Lists the tenant's event types, ordered by name.
#[utoipa::path(
    get, path = "/api/v1/event-type", operation_id = "v1.event-type.list", tag = "Event Type",
    params(ListParams, EventTypeListParams),
    responses(
        (status = 200, body = ListResponse<EventTypeOut>),
        (status = 401, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_event_types(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    QueryParams(filter): QueryParams<EventTypeListParams>,
) -> Result<Json<ListResponse<EventTypeOut>>, ApiError> {
    let query = params.to_query(|k| EventTypeName::parse(k).is_ok())?;
    let page = state
        .store
        .list_event_types(principal.tenant_id(), &query, filter.include_archived)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |e| e.name.to_string(),
        |e| EventTypeOut::from_event_type(e, filter.with_content),
    )))
}

/// Creates an event type; re-creating an archived one un-archives it.
#[utoipa::path(
    post, path = "/api/v1/event-type", operation_id = "v1.event-type.create", tag = "Event Type",
    request_body = EventTypeIn,
    responses(
        (status = 201, body = EventTypeOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_event_type(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    JsonBody(input): JsonBody<EventTypeIn>,
) -> Result<(StatusCode, Json<EventTypeOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    let name = EventTypeName::parse(input.name)?;
    let mut event_type = event_type_from_update(
        name,
        EventTypeUpdate {
            description: input.description,
            archived: input.archived,
            deprecated: input.deprecated,
            feature_flag: input.feature_flag,
            schemas: input.schemas,
        },
    )?;
    match state.store.event_type(tenant_id, &event_type.name).await? {
        Some(existing) if !existing.archived => Err(ApiError::conflict(
            "an event type with this name already exists",
        )),
        Some(existing) => {
            event_type.created_at = existing.created_at;
            event_type.updated_at = herald_store::now_after(existing.updated_at);
            save_event_type(&state, tenant_id, &event_type, existing.updated_at).await?;
            Ok((StatusCode::CREATED, Json(event_type.into())))
        }
        None => {
            state
                .store
                .insert_event_type(tenant_id, &event_type)
                .await
                .map_err(|e| {
                    if e.is_conflict_on("event_type_pkey") {
                        ApiError::conflict("an event type with this name already exists")
                    } else {
                        e.into()
                    }
                })?;
            Ok((StatusCode::CREATED, Json(event_type.into())))
        }
    }
}

/// Gets an event type by name.
#[utoipa::path(
    get, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.get", tag = "Event Type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    responses(
        (status = 200, body = EventTypeOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_event_type(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(name): PathParams<String>,
) -> Result<Json<EventTypeOut>, ApiError> {
    let name = parse_path_name(&name)?;
    let event_type = state
        .store
        .event_type(principal.tenant_id(), &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(event_type.into()))
}

/// Replaces an event type, creating it (201) when it does not exist.
#[utoipa::path(
    put, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.update", tag = "Event Type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    request_body = EventTypeUpdate,
    responses(
        (status = 200, body = EventTypeOut), (status = 201, body = EventTypeOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn update_event_type(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(name): PathParams<String>,
    JsonBody(input): JsonBody<EventTypeUpdate>,
) -> Result<(StatusCode, Json<EventTypeOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    let name = parse_path_name(&name)?;
    let mut event_type = event_type_from_update(name, input)?;
    match state.store.event_type(tenant_id, &event_type.name).await? {
        Some(existing) => {
            event_type.created_at = existing.created_at;
            event_type.updated_at = herald_store::now_after(existing.updated_at);
            save_event_type(&state, tenant_id, &event_type, existing.updated_at).await?;
            Ok((StatusCode::OK, Json(event_type.into())))
        }
        None => {
            state
                .store
                .insert_event_type(tenant_id, &event_type)
                .await?;
            Ok((StatusCode::CREATED, Json(event_type.into())))
        }
    }
}

/// Changes the given fields of an event type.
#[utoipa::path(
    patch, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.patch", tag = "Event Type",
    params(("event_type_name" = String, Path, description = "The event type's name")),
    request_body = EventTypePatch,
    responses(
        (status = 200, body = EventTypeOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_event_type(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(name): PathParams<String>,
    JsonBody(patch): JsonBody<EventTypePatch>,
) -> Result<Json<EventTypeOut>, ApiError> {
    let tenant_id = principal.require_org()?;
    let name = parse_path_name(&name)?;
    let mut event_type = state
        .store
        .event_type(tenant_id, &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(description) = patch.description {
        event_type.description = parse_description(description)?;
    }
    if let Some(archived) = patch.archived {
        event_type.archived = archived;
    }
    if let Some(deprecated) = patch.deprecated {
        event_type.deprecated = deprecated;
    }
    if let Some(flag) = patch.feature_flag {
        event_type.feature_flag = flag.map(FeatureFlag::parse).transpose()?;
    }
    if let Some(schemas) = patch.schemas {
        event_type.schemas = parse_schemas(schemas)?;
    }
    let expected = event_type.updated_at;
    event_type.updated_at = herald_store::now_after(expected);
    save_event_type(&state, tenant_id, &event_type, expected).await?;
    Ok(Json(event_type.into()))
}

/// Archives an event type, or deletes it for good with `expunge=true`.
#[utoipa::path(
    delete, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.delete", tag = "Event Type",
    params(("event_type_name" = String, Path, description = "The event type's name"), EventTypeDeleteParams),
    responses(
        (status = 204, description = "Archived or deleted"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn delete_event_type(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(name): PathParams<String>,
    QueryParams(params): QueryParams<EventTypeDeleteParams>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.require_org()?;
    let name = parse_path_name(&name)?;
    if params.expunge {
        if !state.store.delete_event_type(tenant_id, &name).await? {
            return Err(ApiError::NotFound);
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    let mut event_type = state
        .store
        .event_type(tenant_id, &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    event_type.archived = true;
    let expected = event_type.updated_at;
    event_type.updated_at = herald_store::now_after(expected);
    save_event_type(&state, tenant_id, &event_type, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}
