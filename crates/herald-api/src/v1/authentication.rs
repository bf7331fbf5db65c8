//! App-scoped tokens: `POST /api/v1/auth/app-portal-access/{app_id}` issues a
//! JWT that can see one application of the tenant and nothing else, and
//! `POST /api/v1/auth/logout` revokes the token it is called with.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::ValidationError;

use crate::auth::{AppGrant, OrgPrincipal, Principal};
use crate::capability::{AppPortalCapability, Capabilities};
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams};
use crate::v1::application::{existing_or_inline_application, ApplicationIn};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/auth/app-portal-access/{app_id}",
            post(app_portal_access),
        )
        .route("/api/v1/auth/logout", post(logout))
}

const MIN_EXPIRY_SECONDS: u64 = 60 * 60;
const MAX_EXPIRY_SECONDS: u64 = 7 * 24 * 60 * 60;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPortalAccessIn {
    /// Creates the application when the id or uid in the path does not exist yet.
    pub application: Option<ApplicationIn>,
    /// Token lifetime in seconds (1 hour to 7 days, default 7 days).
    pub expiry: Option<u64>,
    /// What the token may do (`ViewBase` is always included). Without it, and
    /// without `readOnly`, the token may do everything an application token can.
    pub capabilities: Option<Vec<AppPortalCapability>>,
    /// Keeps `ViewBase` alone, whatever `capabilities` lists.
    pub read_only: Option<bool>,
    /// Herald: the portal's accent colour for this token's sessions, `#rrggbb`.
    #[schema(pattern = "^#[0-9a-fA-F]{6}$", example = "#4f46e5")]
    pub accent_color: Option<String>,
}

impl AppPortalAccessIn {
    fn capabilities(&self) -> Capabilities {
        let read_only = self.read_only.unwrap_or(false);
        match &self.capabilities {
            Some(listed) => Capabilities::listed(listed, read_only),
            None if read_only => Capabilities::listed(&[], true),
            None => Capabilities::UNRESTRICTED,
        }
    }
}

/// Whether `color` is `#` and six hex digits: it ends up in a style property.
fn is_hex_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppPortalAccessOut {
    /// A bearer token limited to this application.
    pub token: String,
    /// The app portal for this application, signed in with the token: this
    /// server's console with the token in the fragment, which the portal
    /// exchanges for a session and removes from the address bar.
    pub url: String,
}

/// Issues a token that can only access one application.
#[utoipa::path(
    post, path = "/api/v1/auth/app-portal-access/{app_id}", operation_id = "v1.authentication.app-portal-access", tag = "Authentication",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = AppPortalAccessIn,
    responses(
        (status = 200, body = AppPortalAccessOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn app_portal_access(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(app_id): PathParams<String>,
    JsonBody(input): JsonBody<AppPortalAccessIn>,
) -> Result<Json<AppPortalAccessOut>, ApiError> {
    let tenant_id = principal.require_org()?;
    let expiry = input.expiry.unwrap_or(MAX_EXPIRY_SECONDS);
    if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&expiry) {
        return Err(ValidationError::new(
            "expiry",
            format!("must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS} seconds"),
        )
        .into());
    }
    if let Some(color) = input.accent_color.as_deref().filter(|c| !is_hex_color(c)) {
        return Err(ValidationError::new(
            "accentColor",
            format!("{color:?} is not a colour like #4f46e5"),
        )
        .into());
    }
    let grant = AppGrant {
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(expiry as i64),
        capabilities: input.capabilities(),
        accent: input.accent_color.clone(),
    };
    let app = existing_or_inline_application(&state, tenant_id, &app_id, input.application).await?;
    let token = state.jwt.issue_app_token(tenant_id, &app, &grant)?;
    let url = format!(
        "{}/console#token={token}",
        state.config.public_url.trim_end_matches('/'),
    );
    Ok(Json(AppPortalAccessOut { token, url }))
}

/// Logs out the app-scoped token the request carries: it is refused from now
/// until it would have expired. A tenant API key cannot be logged out (revoke
/// it through the admin API or `herald tenant` instead).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", operation_id = "v1.authentication.logout", tag = "Authentication",
    responses(
        (status = 204, description = "The token is revoked"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    match principal {
        Principal::App {
            tenant_id,
            token_id,
            expires_at,
            ..
        } => {
            state
                .revoked_tokens
                .revoke(&state, &tenant_id, &token_id, expires_at)
                .await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Principal::Tenant { .. } => Err(ApiError::Forbidden(
            "only an application token can be logged out; revoke API keys through the admin API"
                .into(),
        )),
    }
}
