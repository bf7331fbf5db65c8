//! Health checks: `/api/v1/health` checks the database, `/health/ping` only the process.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health).head(health))
        .route("/api/v1/health/ping", get(ping).head(ping))
}

/// Reports whether the server and its database are usable.
#[utoipa::path(
    get, path = "/api/v1/health", operation_id = "v1.health.get", tag = "Health",
    responses(
        (status = 204, description = "The server and its database are healthy"),
        (status = 503, description = "The database is unreachable", body = crate::error::HttpErrorOut),
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    state.store.ping().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers as long as the process runs.
#[utoipa::path(
    get, path = "/api/v1/health/ping", operation_id = "v1.health.ping", tag = "Health",
    responses((status = 204, description = "The process is running"))
)]
pub async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}
