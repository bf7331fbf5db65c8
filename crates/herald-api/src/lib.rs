//! Herald's HTTP API: the Svix-compatible `/api/v1` routes, the operator's
//! `/admin/v1` routes, and the OpenAPI document and docs page.
//!
//! Handlers validate input into `herald-core` types, call the [`Store`] with the
//! caller's tenant first, and answer in Svix's JSON shapes. The API never talks
//! to endpoint URLs.

pub mod accept;
pub mod admin;
pub mod auth;
pub mod capability;
pub mod console;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod ingest;
pub mod limits;
pub mod list;
pub mod metrics;
pub mod openapi;
pub mod v1;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Extension, Router};
use tower_http::normalize_path::NormalizePath;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use herald_cache::IdempotencyStore;
use herald_store::Store;

pub use auth::JwtKeys;

/// Settings of the HTTP layer, validated at start-up.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Base URL clients reach this server at; used in app-portal links.
    pub public_url: String,
    /// Bearer token of `/admin/v1`; `None` turns the admin API off.
    pub admin_token: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time a request body may take to arrive once a handler reads it;
    /// slower ones get 408.
    pub body_timeout: std::time::Duration,
    /// Bearer token `/metrics` requires; `None` leaves it open.
    pub metrics_token: Option<String>,
    /// How long a payload is kept when its message names no retention.
    pub payload_retention: chrono::Duration,
    /// What each tenant may post and create.
    pub limits: Arc<limits::TenantLimits>,
    /// The console's CSP `frame-ancestors` sources: who may embed it.
    pub console_frame_ancestors: String,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub jwt: JwtKeys,
    pub config: Arc<ApiConfig>,
    /// Stores posted messages in batches (group commit) and, when this
    /// process can reach the workers' queue, publishes their deliveries at
    /// once; otherwise the worker's relay hands them out from the database.
    pub accepter: accept::Accepter,
    /// API keys recently found valid.
    pub api_keys: auth::KeyCache,
    /// App-scoped tokens that were logged out.
    pub revoked_tokens: auth::RevokedTokens,
    /// Each tenant's message rate.
    pub message_rate: limits::MessageRate,
    /// Sources recently read by `/ingest`.
    pub sources: ingest::SourceCache,
}

/// The whole HTTP application. Every route answers with or without a trailing
/// slash (`/api/v1/app/` as `/api/v1/app`, as svix-server does), except the
/// docs page, a static site whose relative links need its `/docs/`.
pub fn router(state: AppState) -> Router {
    // Idempotency covers the tenant API only: admin responses carry freshly
    // minted API keys, which must not be kept in a cache.
    let api = v1::router().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        idempotency::idempotency,
    ));
    let body_timeout = extract::BodyTimeout(state.config.body_timeout);
    let console = console::router().layer(axum::middleware::map_response_with_state(
        state.clone(),
        console::security_headers,
    ));
    let api = Router::new()
        .merge(api)
        .merge(console)
        .merge(admin::router())
        .merge(ingest::router())
        .merge(metrics::routes(state.config.metrics_token.clone()))
        .route(
            "/api/v1/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::openapi_json(),
                )
            }),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // After every route and the fallback, so each request's matched path
        // (its route template) is known to the middleware.
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Extension(body_timeout))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    let docs = Router::new()
        .merge(
            SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/api/v1/openapi.json")),
        )
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http());
    // Trimmed before the API router routes (a layer on it would run after
    // routing), so the matched path and its metrics label are the slashless
    // template; the query string is kept.
    docs.fallback_service(NormalizePath::trim_trailing_slash(api))
}
