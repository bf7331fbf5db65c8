//! Applications: a tenant's customers, each with its own endpoints.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_core::policy::RetryPolicySpec;
use herald_core::{ApplicationId, TenantId, Uid, ValidationError};
use herald_store::Application;

use crate::auth::{OrgPrincipal, Principal};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::{nullable, parse_retry_policy, visible_app};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app",
            get(list_applications).post(create_application),
        )
        .route(
            "/api/v1/app/{app_id}",
            get(get_application)
                .put(update_application)
                .patch(patch_application)
                .delete(delete_application),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    #[schema(example = "My first application")]
    pub name: String,
    /// Optional unique identifier for the application.
    #[schema(example = "unique-app-identifier")]
    pub uid: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Maximum messages per second to send to this application's endpoints.
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<u16>,
    /// How deliveries to this application's endpoints are retried; an endpoint
    /// may override each setting. Unset settings follow the server's default.
    /// On `PUT`, omitted keeps the current policy and null removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RetryPolicySpec>, nullable)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    #[schema(example = "app_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub throttle_rate: Option<u16>,
    /// The same as `throttleRate`, under the name older SDKs read.
    pub rate_limit: Option<u16>,
    /// The application's own retry settings; null when it sets none.
    pub retry_policy: Option<RetryPolicySpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub uid: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable", alias = "rateLimit")]
    #[schema(value_type = Option<u16>, nullable)]
    pub throttle_rate: Option<Option<u16>>,
    /// A new retry policy; null removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RetryPolicySpec>, nullable)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateApplicationParams {
    /// Return the existing application (200) instead of a 409 when the uid exists.
    #[serde(default)]
    pub get_if_exists: bool,
}

impl From<Application> for ApplicationOut {
    fn from(app: Application) -> Self {
        Self {
            id: app.id.to_string(),
            uid: app.uid.map(Uid::into_inner),
            name: app.name,
            metadata: app.metadata,
            throttle_rate: app.throttle_rate,
            rate_limit: app.throttle_rate,
            retry_policy: app.retry_policy,
            created_at: app.created_at,
            updated_at: app.updated_at,
        }
    }
}

fn parse_name(name: String) -> Result<String, ApiError> {
    // Checked here, not only by the JSON extractor: applications also arrive
    // inline in message bodies, which are parsed without a NUL scan.
    if name.contains('\0') {
        return Err(ValidationError::new("name", "must not contain NUL characters").into());
    }
    if name.trim().is_empty() {
        return Err(ValidationError::new("name", "must not be empty").into());
    }
    if name.len() > 256 {
        return Err(ValidationError::new("name", "must be at most 256 characters long").into());
    }
    Ok(name)
}

fn parse_metadata(
    metadata: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if metadata
        .iter()
        .any(|(key, value)| key.contains('\0') || value.contains('\0'))
    {
        return Err(ValidationError::new("metadata", "must not contain NUL characters").into());
    }
    Ok(metadata)
}

fn parse_throttle(rate: Option<u16>) -> Result<Option<u16>, ApiError> {
    match rate {
        Some(0) => Err(ValidationError::new("throttleRate", "must be at least 1").into()),
        other => Ok(other),
    }
}

/// A new application from validated input.
pub(crate) fn application_from_input(
    input: ApplicationIn,
    uid: Option<Uid>,
) -> Result<Application, ApiError> {
    let uid = match input.uid {
        Some(uid) => Some(Uid::parse(uid)?),
        None => uid,
    };
    let now = herald_store::now();
    Ok(Application {
        id: ApplicationId::new(),
        uid,
        name: parse_name(input.name)?,
        metadata: parse_metadata(input.metadata.unwrap_or_default())?,
        throttle_rate: parse_throttle(input.throttle_rate)?,
        retry_policy: parse_retry_policy(input.retry_policy.flatten())?,
        created_at: now,
        updated_at: now,
    })
}

fn map_uid_conflict(error: herald_store::StoreError) -> ApiError {
    if error.is_conflict_on("application_tenant_id_uid_key") {
        ApiError::conflict("an application with this uid already exists")
    } else {
        error.into()
    }
}

/// The application named by `app_param`, or — when it does not exist, the
/// request carries an inline `application` and the path is a uid — a new one
/// created with that uid (Svix's "create the application on the fly").
pub(crate) async fn existing_or_inline_application(
    state: &AppState,
    tenant_id: &TenantId,
    app_param: &str,
    inline: Option<ApplicationIn>,
) -> Result<Application, ApiError> {
    let app_ref = herald_core::IdOrUid::parse("app_id", app_param)?;
    if let Some(app) = state.store.application(tenant_id, &app_ref).await? {
        return Ok(app);
    }
    match inline {
        Some(new_app) if !ApplicationId::looks_like(app_param) => {
            let path_uid = Uid::parse(app_param).map_err(|e| e.at(&["path", "app_id"]))?;
            let app = application_from_input(new_app, Some(path_uid))
                .map_err(|e| e.nested_in("application"))?;
            insert_application(state, tenant_id, &app).await?;
            Ok(app)
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Inserts `app`, mapping a uid collision to a 409.
pub(crate) async fn insert_application(
    state: &AppState,
    tenant_id: &TenantId,
    app: &Application,
) -> Result<(), ApiError> {
    state
        .store
        .insert_application(tenant_id, app)
        .await
        .map_err(map_uid_conflict)
}

/// Applies `change` to the stored application and writes it back, starting
/// again from a fresh read when a concurrent request changed it in between.
async fn modify_application(
    state: &AppState,
    principal: &Principal,
    app_param: &str,
    mut change: impl FnMut(&mut Application) -> Result<(), ApiError>,
) -> Result<Application, ApiError> {
    for _ in 0..crate::v1::endpoint::MAX_WRITE_ATTEMPTS {
        let mut app = visible_app(state, principal, app_param).await?;
        let expected = app.updated_at;
        change(&mut app)?;
        app.updated_at = herald_store::now_after(expected);
        let written = state
            .store
            .update_application(principal.tenant_id(), &app, expected)
            .await
            .map_err(map_uid_conflict)?;
        if written {
            return Ok(app);
        }
    }
    Err(ApiError::conflict(
        "the application is being changed by other requests; retry",
    ))
}

/// Lists the tenant's applications.
#[utoipa::path(
    get, path = "/api/v1/app", operation_id = "v1.application.list", tag = "Application",
    params(ListParams),
    responses(
        (status = 200, body = ListResponse<ApplicationOut>),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_applications(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<ListResponse<ApplicationOut>>, ApiError> {
    let tenant_id = principal.require_org()?;
    let query = params.to_query(|k| ApplicationId::parse(k).is_ok())?;
    let page = state.store.list_applications(tenant_id, &query).await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |a| a.id.to_string(),
        ApplicationOut::from,
    )))
}

/// Creates an application (or returns it, with `get_if_exists=true`).
#[utoipa::path(
    post, path = "/api/v1/app", operation_id = "v1.application.create", tag = "Application",
    params(CreateApplicationParams), request_body = ApplicationIn,
    responses(
        (status = 201, body = ApplicationOut), (status = 200, body = ApplicationOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_application(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    QueryParams(params): QueryParams<CreateApplicationParams>,
    JsonBody(input): JsonBody<ApplicationIn>,
) -> Result<(StatusCode, Json<ApplicationOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    let app = application_from_input(input, None)?;
    if params.get_if_exists {
        if let Some(uid) = &app.uid {
            let existing = state
                .store
                .application(
                    tenant_id,
                    &herald_core::IdOrUid::parse("uid", uid.as_str())?,
                )
                .await?;
            if let Some(existing) = existing {
                return Ok((StatusCode::OK, Json(existing.into())));
            }
        }
    }
    insert_application(&state, tenant_id, &app).await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// Gets an application by id or uid.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}", operation_id = "v1.application.get", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses(
        (status = 200, body = ApplicationOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_application(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
) -> Result<Json<ApplicationOut>, ApiError> {
    Ok(Json(visible_app(&state, &principal, &app_id).await?.into()))
}

/// Replaces an application, creating it (201) when the uid is new.
#[utoipa::path(
    put, path = "/api/v1/app/{app_id}", operation_id = "v1.application.update", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationIn,
    responses(
        (status = 200, body = ApplicationOut), (status = 201, body = ApplicationOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn update_application(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(app_id): PathParams<String>,
    JsonBody(input): JsonBody<ApplicationIn>,
) -> Result<(StatusCode, Json<ApplicationOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    let app_ref = herald_core::IdOrUid::parse("app_id", &app_id)?;
    match state.store.application(tenant_id, &app_ref).await? {
        Some(existing) => {
            // A PUT by uid keeps that uid when the body does not name one.
            let path_uid = existing.uid.clone().filter(|uid| uid.as_str() == app_id);
            // Clients that do not know `retryPolicy` never change it.
            let replaces_policy = input.retry_policy.is_some();
            let replacement = application_from_input(input, path_uid)?;
            let app = modify_application(&state, &principal, existing.id.as_str(), |app| {
                app.uid = replacement.uid.clone();
                app.name = replacement.name.clone();
                app.metadata = replacement.metadata.clone();
                app.throttle_rate = replacement.throttle_rate;
                if replaces_policy {
                    app.retry_policy = replacement.retry_policy.clone();
                }
                Ok(())
            })
            .await?;
            Ok((StatusCode::OK, Json(app.into())))
        }
        // An id names an object that must already exist; a uid can be created.
        None if ApplicationId::looks_like(&app_id) => Err(ApiError::NotFound),
        None => {
            let path_uid = Uid::parse(app_id).map_err(|e| e.at(&["path", "app_id"]))?;
            let app = application_from_input(input, Some(path_uid))?;
            insert_application(&state, tenant_id, &app).await?;
            Ok((StatusCode::CREATED, Json(app.into())))
        }
    }
}

/// Changes the given fields of an application.
#[utoipa::path(
    patch, path = "/api/v1/app/{app_id}", operation_id = "v1.application.patch", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationPatch,
    responses(
        (status = 200, body = ApplicationOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_application(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(app_id): PathParams<String>,
    JsonBody(patch): JsonBody<ApplicationPatch>,
) -> Result<Json<ApplicationOut>, ApiError> {
    let name = patch.name.map(parse_name).transpose()?;
    let uid = patch
        .uid
        .map(|uid| uid.map(Uid::parse).transpose())
        .transpose()?;
    let throttle_rate = patch.throttle_rate.map(parse_throttle).transpose()?;
    let retry_policy = patch.retry_policy.map(parse_retry_policy).transpose()?;
    let app = modify_application(&state, &principal, &app_id, |app| {
        if let Some(name) = &name {
            app.name = name.clone();
        }
        if let Some(uid) = &uid {
            app.uid = uid.clone();
        }
        if let Some(metadata) = &patch.metadata {
            app.metadata = metadata.clone();
        }
        if let Some(rate) = throttle_rate {
            app.throttle_rate = rate;
        }
        if let Some(policy) = &retry_policy {
            app.retry_policy = policy.clone();
        }
        Ok(())
    })
    .await?;
    Ok(Json(app.into()))
}

/// Deletes an application and its endpoints.
#[utoipa::path(
    delete, path = "/api/v1/app/{app_id}", operation_id = "v1.application.delete", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn delete_application(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(app_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.require_org()?;
    let app = visible_app(&state, &principal, &app_id).await?;
    if !state.store.delete_application(tenant_id, &app.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
