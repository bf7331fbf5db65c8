//! The Svix-compatible `/api/v1` routes, one module per resource.

pub mod application;
pub mod attempt;
pub mod authentication;
pub mod endpoint;
pub mod event_type;
pub mod health;
pub mod message;
pub mod stats;

use axum::Router;
use serde::{Deserialize, Deserializer};

use herald_core::IdOrUid;
use herald_store::Application;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(application::router())
        .merge(endpoint::router())
        .merge(event_type::router())
        .merge(message::router())
        .merge(attempt::router())
        .merge(stats::router())
        .merge(authentication::router())
}

/// Deserializes a field where "absent" and "null" mean different things in a
/// PATCH: absent leaves the value alone (`None`), null clears it (`Some(None)`).
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Loads the application named by a path segment (id or uid) that the caller
/// may see; anything else is the same 404.
pub(crate) async fn visible_app(
    state: &AppState,
    principal: &Principal,
    app_param: &str,
) -> Result<Application, ApiError> {
    let app_ref = IdOrUid::parse("app_id", app_param)?;
    let app = state
        .store
        .application(principal.tenant_id(), &app_ref)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !principal.can_see(&app.id) {
        return Err(ApiError::NotFound);
    }
    Ok(app)
}

/// Longest list of names (event types, channels, tags) one request may carry.
pub(crate) const MAX_NAME_LIST: usize = 1000;

/// Checks a list of names for the Svix rules: at least one item, no duplicates,
/// and a bounded length (so validation stays cheap whatever the input).
pub(crate) fn check_name_list<T: Eq + std::hash::Hash>(
    field: &str,
    items: &[T],
    max: Option<usize>,
) -> Result<(), ApiError> {
    let invalid = |msg: String| ApiError::invalid(herald_core::ValidationError::new(field, msg));
    if items.is_empty() {
        return Err(invalid(
            "must contain at least one item; omit it for all".into(),
        ));
    }
    let max = max.unwrap_or(MAX_NAME_LIST);
    if items.len() > max {
        return Err(invalid(format!("must contain at most {max} items")));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    if !items.iter().all(|item| seen.insert(item)) {
        return Err(invalid("must not contain duplicates".into()));
    }
    Ok(())
}
