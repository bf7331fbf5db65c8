//! The `idempotency-key` header on POST to `/api/v1` (the Svix SDKs send one on
//! every POST):
//! a retried request gets the stored response of the first one instead of
//! running again, and a duplicate arriving while the first runs waits for it.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::FromRequestParts;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use herald_cache::{Claim, StoredResponse};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// How long a claim holds if its owner dies before finishing.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a completed response is replayed.
const RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How often a waiting duplicate checks whether the first request finished.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 256;
/// Responses larger than this are not stored (they are never this large today).
const MAX_STORED_BODY: usize = 1 << 20;

pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("idempotency-key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        })?
        .to_owned();
    // Authenticate before anything is claimed or replayed: a revoked key or an
    // expired token must not get a stored response back. The principal is cached
    // in the request's extensions, so the handler does not look it up again.
    let (mut parts, body) = request.into_parts();
    let principal = Principal::from_request_parts(&mut parts, &state).await?;
    let request = Request::from_parts(parts, body);
    // Scope the key by who is calling and what they call, so two tenants (or two
    // routes) using the same key never see each other's responses.
    let caller = match &principal {
        Principal::Tenant { tenant_id } => format!("tenant:{tenant_id}"),
        Principal::App {
            tenant_id, app_id, ..
        } => format!("app:{tenant_id}:{app_id}"),
    };
    let mut hasher = Sha256::new();
    for part in [
        caller.as_bytes(),
        request.uri().to_string().as_bytes(),
        key.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let scoped = hex::encode(hasher.finalize());

    let deadline = tokio::time::Instant::now() + LOCK_TTL;
    loop {
        match state.idempotency.claim(&scoped, LOCK_TTL).await? {
            Claim::Acquired => break,
            Claim::Completed(stored) => return Ok(replay(stored)),
            Claim::InProgress if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Claim::InProgress => {
                return Err(ApiError::conflict(
                    "a request with this idempotency-key is still being processed",
                ))
            }
        }
    }

    let response = next.run(request).await;
    if !response.status().is_success() {
        // Failures are not remembered: the client may fix the cause and retry.
        state.idempotency.release(&scoped).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_STORED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            state.idempotency.release(&scoped).await?;
            return Err(ApiError::Internal(anyhow::anyhow!(
                "failed to buffer response: {error}"
            )));
        }
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    state
        .idempotency
        .complete(&scoped, &stored, RESULT_TTL)
        .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    if let Some(content_type) = stored
        .content_type
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}
