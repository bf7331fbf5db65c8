//! Operational webhook endpoints (`/api/v1/operational-webhook/endpoint`):
//! where a tenant receives Herald's events about its own endpoints and
//! deliveries, with Svix's operational webhook endpoint API. They are stored
//! as endpoints of the tenant's hidden operational application
//! (`herald_store::operational`), so they are signed, retried and logged as
//! any endpoint is. Also the API's side of sending those events
//! ([`emit_endpoint_events`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::operational::{
    DisableTrigger, EventDetail, OperationalEvent, OperationalEventType,
};
use herald_core::{
    ApplicationId, EndpointHeaders, EndpointId, EndpointSecret, EndpointUrl, EventTypeFilter,
    IdOrUid, TenantId, Uid, ValidationError,
};
use herald_signature::SignatureScheme;
use herald_store::{Endpoint, EndpointSecrets};

use crate::auth::OrgPrincipal;
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::endpoint::{parse_description, rewrite_endpoint, EndpointSecretOut};
use crate::v1::{check_name_list, nullable};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/operational-webhook/endpoint",
            get(list_operational_endpoints).post(create_operational_endpoint),
        )
        .route(
            "/api/v1/operational-webhook/endpoint/{endpoint_id}",
            get(get_operational_endpoint)
                .put(update_operational_endpoint)
                .patch(patch_operational_endpoint)
                .delete(delete_operational_endpoint),
        )
        .route(
            "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret",
            get(get_operational_endpoint_secret),
        )
        .route(
            "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
            post(rotate_operational_endpoint_secret),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointIn {
    #[schema(example = "https://example.com/webhook/", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Optional unique identifier for the endpoint.
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// The operational event types this endpoint receives (omit for all):
    /// names, or patterns that match at least one (`endpoint.*`,
    /// `message.attempt.*`, `*`). `eventTypes` is accepted too.
    #[serde(alias = "eventTypes")]
    #[schema(example = json!(["endpoint.disabled", "message.attempt.exhausted"]))]
    pub filter_types: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Maximum messages per second to this endpoint. `throttleRate` is accepted too.
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<u16>,
    /// `whsec_` + base64 of 24–64 bytes; generated when omitted.
    pub secret: Option<String>,
}

/// The body of `PUT`: like [`OperationalWebhookEndpointIn`] without the secret.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointUpdate {
    #[schema(max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(alias = "eventTypes")]
    pub filter_types: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<u16>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointPatch {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub uid: Option<Option<String>>,
    pub disabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable", alias = "eventTypes")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub filter_types: Option<Option<Vec<String>>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable", alias = "throttleRate")]
    #[schema(value_type = Option<u16>, nullable)]
    pub rate_limit: Option<Option<u16>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalWebhookEndpointOut {
    #[schema(example = "ep_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    /// The operational event types it receives; null for all.
    pub filter_types: Option<Vec<String>>,
    /// The same as `filterTypes`, under the name newer SDKs read.
    pub event_types: Option<Vec<String>>,
    pub metadata: BTreeMap<String, String>,
    pub rate_limit: Option<u16>,
    /// The same as `rateLimit`, under the name newer SDKs read.
    pub throttle_rate: Option<u16>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OperationalWebhookEndpointSecretIn {
    /// The new secret; generated when omitted or null. The previous one keeps
    /// signing for 24 hours.
    pub key: Option<String>,
}

impl From<Endpoint> for OperationalWebhookEndpointOut {
    fn from(ep: Endpoint) -> Self {
        let filter_types: Option<Vec<String>> = ep
            .event_types
            .map(|types| types.into_iter().map(EventTypeFilter::into_inner).collect());
        Self {
            id: ep.id.to_string(),
            uid: ep.uid.map(Uid::into_inner),
            url: ep.url.as_str().to_owned(),
            description: ep.description,
            disabled: ep.disabled,
            event_types: filter_types.clone(),
            filter_types,
            metadata: ep.metadata,
            rate_limit: ep.throttle_rate,
            throttle_rate: ep.throttle_rate,
            created_at: ep.created_at,
            updated_at: ep.updated_at,
        }
    }
}

/// `filterTypes`: operational event types, or patterns (`endpoint.*`,
/// `message.attempt.*`, `*`) that match at least one; at least one entry, no
/// duplicates.
fn parse_filter_types(
    types: Option<Vec<String>>,
) -> Result<Option<Vec<EventTypeFilter>>, ApiError> {
    let Some(types) = types else { return Ok(None) };
    check_name_list("filterTypes", &types, None)?;
    types
        .into_iter()
        .map(|name| {
            let filter = EventTypeFilter::parse(name.as_str())
                .map_err(|e| ValidationError::new("filterTypes", e.msg))?;
            let matches_one = OperationalEventType::ALL
                .iter()
                .any(|t| filter.matches(&t.event_type_name()));
            if matches_one {
                return Ok(filter);
            }
            let known: Vec<&str> = OperationalEventType::ALL
                .iter()
                .map(|t| t.as_str())
                .collect();
            let what = match filter.exact() {
                Some(_) => "unknown operational event type",
                None => "a pattern that matches no operational event type",
            };
            Err(ValidationError::new(
                "filterTypes",
                format!("{what} '{name}'; known: {}", known.join(", ")),
            )
            .into())
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Some)
}

fn parse_rate_limit(rate: Option<u16>) -> Result<Option<u16>, ApiError> {
    match rate {
        Some(0) => Err(ValidationError::new("rateLimit", "must be at least 1").into()),
        other => Ok(other),
    }
}

/// The validated fields of a create or a replace.
#[derive(Clone)]
struct Fields {
    url: EndpointUrl,
    description: String,
    uid: Option<Uid>,
    disabled: bool,
    filter_types: Option<Vec<EventTypeFilter>>,
    metadata: herald_core::Metadata,
    rate_limit: Option<u16>,
}

impl Fields {
    fn parse(input: OperationalWebhookEndpointUpdate) -> Result<Self, ApiError> {
        Ok(Self {
            url: EndpointUrl::parse(input.url)?,
            description: parse_description(input.description)?,
            uid: input.uid.map(Uid::parse).transpose()?,
            disabled: input.disabled,
            filter_types: parse_filter_types(input.filter_types)?,
            metadata: input.metadata.unwrap_or_default(),
            rate_limit: parse_rate_limit(input.rate_limit)?,
        })
    }

    fn apply_to(self, endpoint: &mut Endpoint) {
        endpoint.url = self.url;
        endpoint.description = self.description;
        endpoint.uid = self.uid;
        endpoint.disabled = self.disabled;
        endpoint.event_types = self.filter_types;
        endpoint.metadata = self.metadata;
        endpoint.throttle_rate = self.rate_limit;
    }
}

fn map_uid_conflict(error: herald_store::StoreError) -> ApiError {
    if error.is_conflict_on("endpoint_app_id_uid_key") {
        ApiError::conflict("an operational webhook endpoint with this uid already exists")
    } else {
        error.into()
    }
}

/// The tenant's operational application, if it was ever set up.
async fn operational_app(
    state: &AppState,
    tenant_id: &TenantId,
) -> Result<Option<ApplicationId>, ApiError> {
    Ok(state.store.operational_app(tenant_id, false).await?)
}

/// The operational endpoint named by a path segment (id or uid); 404 otherwise.
async fn visible_operational_endpoint(
    state: &AppState,
    tenant_id: &TenantId,
    endpoint_param: &str,
) -> Result<Endpoint, ApiError> {
    let endpoint_ref = IdOrUid::parse("endpoint_id", endpoint_param)?;
    let app_id = operational_app(state, tenant_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .store
        .endpoint(tenant_id, &app_id, &endpoint_ref)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Applies `change` to the stored operational endpoint and writes it back
/// ([`rewrite_endpoint`], as endpoints are changed).
async fn modify_operational_endpoint(
    state: &AppState,
    tenant_id: &TenantId,
    endpoint_param: &str,
    change: impl FnMut(&mut Endpoint) -> Result<(), ApiError>,
) -> Result<Endpoint, ApiError> {
    let load = || visible_operational_endpoint(state, tenant_id, endpoint_param);
    rewrite_endpoint(state, tenant_id, load, change, map_uid_conflict).await
}

/// Lists the tenant's operational webhook endpoints.
#[utoipa::path(
    get, path = "/api/v1/operational-webhook/endpoint", operation_id = "v1.operational-webhook.endpoint.list", tag = "Operational Webhook Endpoint",
    params(ListParams),
    responses(
        (status = 200, body = ListResponse<OperationalWebhookEndpointOut>),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_operational_endpoints(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<ListResponse<OperationalWebhookEndpointOut>>, ApiError> {
    let query = params.to_query_newest_first(|k| EndpointId::parse(k).is_ok())?;
    let tenant_id = principal.tenant_id();
    let page = match operational_app(&state, tenant_id).await? {
        Some(app_id) => {
            state
                .store
                .list_endpoints(tenant_id, &app_id, &query)
                .await?
        }
        None => herald_store::Page {
            items: Vec::new(),
            done: true,
        },
    };
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |e| e.id.to_string(),
        OperationalWebhookEndpointOut::from,
    )))
}

/// Creates an operational webhook endpoint.
#[utoipa::path(
    post, path = "/api/v1/operational-webhook/endpoint", operation_id = "v1.operational-webhook.endpoint.create", tag = "Operational Webhook Endpoint",
    request_body = OperationalWebhookEndpointIn,
    responses(
        (status = 201, body = OperationalWebhookEndpointOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_operational_endpoint(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    JsonBody(input): JsonBody<OperationalWebhookEndpointIn>,
) -> Result<(StatusCode, Json<OperationalWebhookEndpointOut>), ApiError> {
    let secret = input
        .secret
        .as_deref()
        .map(|s| EndpointSecret::parse(s).map_err(|e| e.at(&["body", "secret"])))
        .transpose()?;
    if secret.as_ref().is_some_and(EndpointSecret::is_asymmetric) {
        return Err(ValidationError::new("secret", "must be a whsec_ secret").into());
    }
    let fields = Fields::parse(OperationalWebhookEndpointUpdate {
        url: input.url,
        description: input.description,
        uid: input.uid,
        disabled: input.disabled,
        filter_types: input.filter_types,
        metadata: input.metadata,
        rate_limit: input.rate_limit,
    })?;
    let endpoint =
        insert_operational_endpoint(&state, principal.tenant_id(), fields, secret).await?;
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// Stores a new operational endpoint (setting up the tenant's operational
/// application on first use) with `secret`, or a fresh one.
async fn insert_operational_endpoint(
    state: &AppState,
    tenant_id: &TenantId,
    fields: Fields,
    secret: Option<EndpointSecret>,
) -> Result<Endpoint, ApiError> {
    let app_id = state
        .store
        .operational_app(tenant_id, true)
        .await?
        .ok_or_else(|| {
            ApiError::from(herald_store::StoreError::Corrupt(
                "no operational application".into(),
            ))
        })?;
    crate::v1::endpoint::check_room_for_endpoint(state, tenant_id, &app_id).await?;
    let now = herald_store::now();
    let mut endpoint = Endpoint {
        id: EndpointId::new(),
        app_id,
        uid: None,
        url: fields.url.clone(),
        description: String::new(),
        version: 1,
        disabled: false,
        event_types: None,
        channels: None,
        metadata: Default::default(),
        throttle_rate: None,
        headers: EndpointHeaders::default(),
        secrets: EndpointSecrets::new(
            secret.unwrap_or_else(|| EndpointSecret::generate_for(false)),
        ),
        signature_scheme: SignatureScheme::Standard,
        retry_policy: None,
        app_retry_policy: None,
        health: Default::default(),
        created_at: now,
        updated_at: now,
    };
    fields.apply_to(&mut endpoint);
    state
        .store
        .insert_endpoint(tenant_id, &endpoint)
        .await
        .map_err(map_uid_conflict)?;
    Ok(endpoint)
}

/// Gets an operational webhook endpoint by id or uid.
#[utoipa::path(
    get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.get", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    responses(
        (status = 200, body = OperationalWebhookEndpointOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_operational_endpoint(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
) -> Result<Json<OperationalWebhookEndpointOut>, ApiError> {
    let endpoint =
        visible_operational_endpoint(&state, principal.tenant_id(), &endpoint_id).await?;
    Ok(Json(endpoint.into()))
}

/// Replaces an operational webhook endpoint's settings (not its secret),
/// creating it (201) when the path names a new uid (the SDKs' `upsert`).
#[utoipa::path(
    put, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.update", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    request_body = OperationalWebhookEndpointUpdate,
    responses(
        (status = 200, body = OperationalWebhookEndpointOut),
        (status = 201, body = OperationalWebhookEndpointOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn update_operational_endpoint(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
    JsonBody(input): JsonBody<OperationalWebhookEndpointUpdate>,
) -> Result<(StatusCode, Json<OperationalWebhookEndpointOut>), ApiError> {
    let fields = Fields::parse(input)?;
    let tenant_id = principal.tenant_id();
    let endpoint_ref = IdOrUid::parse("endpoint_id", &endpoint_id)?;
    let existing = match operational_app(&state, tenant_id).await? {
        Some(app_id) => {
            state
                .store
                .endpoint(tenant_id, &app_id, &endpoint_ref)
                .await?
        }
        None => None,
    };
    if existing.is_none() {
        if EndpointId::looks_like(&endpoint_id) {
            return Err(ApiError::NotFound);
        }
        let path_uid = Uid::parse(endpoint_id).map_err(|e| e.at(&["path", "endpoint_id"]))?;
        let mut fields = fields;
        fields.uid = fields.uid.or(Some(path_uid));
        let endpoint = insert_operational_endpoint(&state, tenant_id, fields, None).await?;
        return Ok((StatusCode::CREATED, Json(endpoint.into())));
    }
    let endpoint = modify_operational_endpoint(&state, tenant_id, &endpoint_id, |endpoint| {
        // A PUT by uid keeps that uid when the body does not name one.
        let path_uid = endpoint
            .uid
            .clone()
            .filter(|uid| uid.as_str() == endpoint_id);
        let mut fields = fields.clone();
        fields.uid = fields.uid.or(path_uid);
        fields.apply_to(endpoint);
        Ok(())
    })
    .await?;
    Ok((StatusCode::OK, Json(endpoint.into())))
}

/// Changes the given fields of an operational webhook endpoint; null clears
/// a nullable field.
#[utoipa::path(
    patch, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.patch", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    request_body = OperationalWebhookEndpointPatch,
    responses(
        (status = 200, body = OperationalWebhookEndpointOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_operational_endpoint(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
    JsonBody(patch): JsonBody<OperationalWebhookEndpointPatch>,
) -> Result<Json<OperationalWebhookEndpointOut>, ApiError> {
    let url = patch.url.map(EndpointUrl::parse).transpose()?;
    let description = patch.description.map(parse_description).transpose()?;
    let uid = patch
        .uid
        .map(|uid| uid.map(Uid::parse).transpose())
        .transpose()?;
    let filter_types = patch.filter_types.map(parse_filter_types).transpose()?;
    let rate_limit = patch.rate_limit.map(parse_rate_limit).transpose()?;
    let tenant_id = principal.tenant_id();
    let endpoint = modify_operational_endpoint(&state, tenant_id, &endpoint_id, |endpoint| {
        if let Some(url) = &url {
            endpoint.url = url.clone();
        }
        if let Some(description) = &description {
            endpoint.description = description.clone();
        }
        if let Some(uid) = &uid {
            endpoint.uid = uid.clone();
        }
        if let Some(disabled) = patch.disabled {
            endpoint.disabled = disabled;
        }
        if let Some(types) = &filter_types {
            endpoint.event_types = types.clone();
        }
        if let Some(metadata) = &patch.metadata {
            endpoint.metadata = metadata.clone();
        }
        if let Some(rate) = rate_limit {
            endpoint.throttle_rate = rate;
        }
        Ok(())
    })
    .await?;
    Ok(Json(endpoint.into()))
}

/// Deletes an operational webhook endpoint.
#[utoipa::path(
    delete, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}", operation_id = "v1.operational-webhook.endpoint.delete", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn delete_operational_endpoint(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.tenant_id();
    let endpoint = visible_operational_endpoint(&state, tenant_id, &endpoint_id).await?;
    if !state
        .store
        .delete_endpoint(tenant_id, &endpoint.app_id, &endpoint.id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Gets an operational webhook endpoint's signing secret.
#[utoipa::path(
    get, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret", operation_id = "v1.operational-webhook.endpoint.get-secret", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    responses(
        (status = 200, body = EndpointSecretOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_operational_endpoint_secret(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
) -> Result<Json<EndpointSecretOut>, ApiError> {
    let endpoint =
        visible_operational_endpoint(&state, principal.tenant_id(), &endpoint_id).await?;
    Ok(Json(EndpointSecretOut {
        key: endpoint.secrets.current.shown(),
    }))
}

/// Rotates an operational webhook endpoint's signing secret; the previous
/// one keeps signing for 24 hours. Answers 204, as Svix does.
#[utoipa::path(
    post, path = "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate", operation_id = "v1.operational-webhook.endpoint.rotate-secret", tag = "Operational Webhook Endpoint",
    params(("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    request_body = OperationalWebhookEndpointSecretIn,
    responses(
        (status = 204, description = "Rotated"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn rotate_operational_endpoint_secret(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(endpoint_id): PathParams<String>,
    JsonBody(input): JsonBody<OperationalWebhookEndpointSecretIn>,
) -> Result<StatusCode, ApiError> {
    let given = input
        .key
        .as_deref()
        .map(|key| EndpointSecret::parse(key).map_err(|e| e.at(&["body", "key"])))
        .transpose()?;
    if given.as_ref().is_some_and(EndpointSecret::is_asymmetric) {
        return Err(ValidationError::new("key", "must be a whsec_ secret").into());
    }
    let grace = chrono::Duration::hours(24);
    modify_operational_endpoint(&state, principal.tenant_id(), &endpoint_id, |endpoint| {
        let next = given
            .clone()
            .unwrap_or_else(|| EndpointSecret::generate_for(false));
        endpoint.secrets.rotate(next, grace, herald_store::now());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the operational webhooks about an endpoint the API just wrote, in
/// order. The write is committed, so an event that cannot be stored is
/// logged, not turned into an error for a request that succeeded.
pub(crate) async fn emit_endpoint_events(
    state: &AppState,
    tenant_id: &TenantId,
    endpoint: &Endpoint,
    event_types: &[OperationalEventType],
) {
    for &event_type in event_types {
        let detail = match event_type {
            OperationalEventType::EndpointDisabled => EventDetail::Disabled {
                trigger: DisableTrigger::Manual,
                fail_since: None,
            },
            _ => EventDetail::Endpoint,
        };
        let event = OperationalEvent {
            event_type,
            app_id: endpoint.app_id.clone(),
            endpoint_id: endpoint.id.clone(),
            endpoint_uid: endpoint.uid.clone(),
            detail,
        };
        if let Err(error) =
            herald_store::emit_operational(state.store.as_ref(), tenant_id, &event).await
        {
            tracing::warn!(%error, event_type = event_type.as_str(), endpoint_id = %endpoint.id, "could not queue the operational webhook");
        }
    }
}

/// The events an endpoint change calls for: `endpoint.updated`, then
/// `endpoint.enabled` or `endpoint.disabled` when `disabled` changed.
pub(crate) fn update_events(was_disabled: bool, is_disabled: bool) -> Vec<OperationalEventType> {
    let mut events = vec![OperationalEventType::EndpointUpdated];
    match (was_disabled, is_disabled) {
        (false, true) => events.push(OperationalEventType::EndpointDisabled),
        (true, false) => events.push(OperationalEventType::EndpointEnabled),
        _ => {}
    }
    events
}
