//! The Svix-compatible `/api/v1` routes, one module per resource.

pub mod application;
pub mod attempt;
pub mod authentication;
pub mod dead_letter;
pub mod endpoint;
pub mod event_type;
pub mod health;
pub mod message;
pub mod operational;
pub mod signing;
pub mod source;
pub mod stats;

use axum::Router;
use serde::{Deserialize, Deserializer};

use herald_core::policy::RetryPolicySpec;
use herald_core::{ChannelName, IdOrUid};
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
        .merge(dead_letter::router())
        .merge(stats::router())
        .merge(authentication::router())
        .merge(operational::router())
        .merge(source::router())
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

/// Checks a `retryPolicy` before it is stored; an empty one (`{}`) sets
/// nothing and is stored as none.
pub(crate) fn parse_retry_policy(
    policy: Option<RetryPolicySpec>,
) -> Result<Option<RetryPolicySpec>, ApiError> {
    match policy {
        Some(policy) if policy == RetryPolicySpec::default() => Ok(None),
        Some(policy) => {
            policy.validate("retryPolicy")?;
            Ok(Some(policy))
        }
        None => Ok(None),
    }
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

/// Loads a message of `app` by id or eventId; anything else is 404.
pub(crate) async fn visible_message(
    state: &AppState,
    principal: &Principal,
    app: &Application,
    msg_param: &str,
) -> Result<herald_store::Message, ApiError> {
    let msg_ref = IdOrUid::parse("msg_id", msg_param)?;
    state
        .store
        .message(principal.tenant_id(), &app.id, &msg_ref)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A `channels` list of a request body: 1 to `max` distinct channel names.
pub(crate) fn parse_channel_list(
    channels: Option<Vec<String>>,
    max: usize,
) -> Result<Option<Vec<ChannelName>>, ApiError> {
    let Some(channels) = channels else {
        return Ok(None);
    };
    check_name_list("channels", &channels, Some(max))?;
    channels
        .into_iter()
        .map(|c| ChannelName::parse(c).map_err(ApiError::from))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The `channel` filter of a listing's query string.
pub(crate) fn query_channel(channel: Option<String>) -> Result<Option<ChannelName>, ApiError> {
    channel
        .map(|c| ChannelName::parse(c).map_err(|e| ApiError::from(e.at(&["query", "channel"]))))
        .transpose()
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
