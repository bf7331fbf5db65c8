//! The operator's API under `/admin/v1`, authorised by `HERALD_ADMIN_TOKEN`:
//! tenants and their API keys. The CLI's `herald tenant …` calls the same functions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::{ApiKeyId, TenantId, ValidationError};
use herald_store::{ApiKey, Store, Tenant};

use crate::auth::{new_api_key, Admin};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, OptionalJsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/admin/v1/tenants/{tenant_id}", get(get_tenant))
        .route(
            "/admin/v1/tenants/{tenant_id}/keys",
            get(list_api_keys).post(create_api_key),
        )
        .route(
            "/admin/v1/tenants/{tenant_id}/keys/{key_id}",
            delete(revoke_api_key),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TenantIn {
    #[schema(example = "Acme Corp")]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantOut {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A new tenant with its first key; the key is shown only here.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantCreatedOut {
    pub tenant_id: String,
    pub name: String,
    pub key_id: String,
    /// The API key; only its hash is stored, so save it now.
    pub key: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ApiKeyIn {
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key; the key itself is shown only here.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreatedOut {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub key: String,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name,
            created_at: t.created_at,
        }
    }
}

impl From<ApiKey> for ApiKeyOut {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name,
            prefix: k.prefix,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

fn parse_label(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 256 {
        return Err(ValidationError::new(field, "must be 1 to 256 characters long").into());
    }
    Ok(name.to_owned())
}

/// Creates a tenant and its first API key.
pub async fn create_tenant_with_key(
    store: &dyn Store,
    name: &str,
) -> Result<TenantCreatedOut, ApiError> {
    let tenant = Tenant {
        id: TenantId::new(),
        name: parse_label("name", name)?,
        created_at: herald_store::now(),
    };
    store.insert_tenant(&tenant).await?;
    let (key, record) = new_api_key(&tenant.id, "default");
    store.insert_api_key(&tenant.id, &record).await?;
    Ok(TenantCreatedOut {
        tenant_id: tenant.id.to_string(),
        name: tenant.name,
        key_id: record.id.to_string(),
        key,
    })
}

async fn existing_tenant(state: &AppState, tenant_id: &str) -> Result<Tenant, ApiError> {
    let tenant_id = TenantId::parse(tenant_id).map_err(|_| ApiError::NotFound)?;
    state
        .store
        .tenant(&tenant_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Creates a tenant and returns its first API key.
#[utoipa::path(
    post, path = "/admin/v1/tenants", operation_id = "admin.tenant.create", tag = "Admin",
    request_body = TenantIn,
    responses(
        (status = 201, body = TenantCreatedOut),
        (status = 401, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("AdminToken" = []))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    _admin: Admin,
    JsonBody(input): JsonBody<TenantIn>,
) -> Result<(StatusCode, Json<TenantCreatedOut>), ApiError> {
    let created = create_tenant_with_key(state.store.as_ref(), &input.name).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists tenants.
#[utoipa::path(
    get, path = "/admin/v1/tenants", operation_id = "admin.tenant.list", tag = "Admin",
    params(ListParams),
    responses((status = 200, body = ListResponse<TenantOut>), (status = 401, body = HttpErrorOut)),
    security(("AdminToken" = []))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<ListResponse<TenantOut>>, ApiError> {
    let query = params.to_query(|k| TenantId::parse(k).is_ok())?;
    let page = state.store.list_tenants(&query).await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |t| t.id.to_string(),
        TenantOut::from,
    )))
}

/// Gets a tenant.
#[utoipa::path(
    get, path = "/admin/v1/tenants/{tenant_id}", operation_id = "admin.tenant.get", tag = "Admin",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantOut), (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut)),
    security(("AdminToken" = []))
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(tenant_id): PathParams<String>,
) -> Result<Json<TenantOut>, ApiError> {
    Ok(Json(existing_tenant(&state, &tenant_id).await?.into()))
}

/// Lists a tenant's API keys (prefixes only).
#[utoipa::path(
    get, path = "/admin/v1/tenants/{tenant_id}/keys", operation_id = "admin.api-key.list", tag = "Admin",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Vec<ApiKeyOut>), (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut)),
    security(("AdminToken" = []))
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(tenant_id): PathParams<String>,
) -> Result<Json<Vec<ApiKeyOut>>, ApiError> {
    let tenant = existing_tenant(&state, &tenant_id).await?;
    let keys = state.store.list_api_keys(&tenant.id).await?;
    Ok(Json(keys.into_iter().map(ApiKeyOut::from).collect()))
}

/// Creates another API key for a tenant.
#[utoipa::path(
    post, path = "/admin/v1/tenants/{tenant_id}/keys", operation_id = "admin.api-key.create", tag = "Admin",
    params(("tenant_id" = String, Path)), request_body = ApiKeyIn,
    responses((status = 201, body = ApiKeyCreatedOut), (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut)),
    security(("AdminToken" = []))
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(tenant_id): PathParams<String>,
    OptionalJsonBody(input): OptionalJsonBody<ApiKeyIn>,
) -> Result<(StatusCode, Json<ApiKeyCreatedOut>), ApiError> {
    let tenant = existing_tenant(&state, &tenant_id).await?;
    let name = parse_label("name", input.name.as_deref().unwrap_or("default"))?;
    let (key, record) = new_api_key(&tenant.id, &name);
    state.store.insert_api_key(&tenant.id, &record).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreatedOut {
            id: record.id.to_string(),
            name: record.name,
            prefix: record.prefix,
            created_at: record.created_at,
            key,
        }),
    ))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(
    delete, path = "/admin/v1/tenants/{tenant_id}/keys/{key_id}", operation_id = "admin.api-key.revoke", tag = "Admin",
    params(("tenant_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut)),
    security(("AdminToken" = []))
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams((tenant_id, key_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = existing_tenant(&state, &tenant_id).await?;
    let key_id = ApiKeyId::parse(&key_id).map_err(|_| ApiError::NotFound)?;
    if !state.store.revoke_api_key(&tenant.id, &key_id).await? {
        return Err(ApiError::NotFound);
    }
    state.api_keys.clear();
    Ok(StatusCode::NO_CONTENT)
}
