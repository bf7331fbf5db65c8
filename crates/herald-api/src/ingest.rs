//! `POST /ingest/{source_id}`: inbound webhooks. A provider (Stripe, GitHub,
//! Shopify, Slack, a Standard Webhooks sender, or one with its own HMAC
//! header) posts to a tenant's source; the request carries no tenant key and
//! is authenticated by the provider's signature alone
//! (`herald_core::source::SourceKind::verify`, over `herald-signature`).
//!
//! A verified request becomes a message of the source's application, stored
//! byte for byte through the same accept batcher as `POST …/msg`
//! (`v1::message::accept_message`), so fan-out, filters, retries, stats and
//! the console apply. Its `eventId` is the provider's event id, so a
//! redelivery finds it taken in the same transaction and is answered 200
//! without a second message. Every refusal is a 4xx with a code and a
//! detail, stores nothing, and is counted in `herald_ingest_rejected_total`
//! by provider and reason (never by source: ids are not labels).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use herald_core::source::{Inbound, InboundError, ProviderName};
use herald_core::{IdOrUid, SourceId, TenantId};
use herald_signature::SignatureError;
use herald_store::Source;

use crate::error::{ApiError, HttpErrorOut};
use crate::extract::{BodyTimeout, PathParams};
use crate::v1::message::{accept_message, Post};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/ingest/{source_id}", post(ingest))
}

/// Sources read in the last second, by id, with their tenant: a provider
/// sends in bursts, and each request would otherwise read its source first.
/// A change through this process forgets the source at once; through another
/// one, it applies within the second.
#[derive(Clone)]
pub struct SourceCache(moka::sync::Cache<SourceId, Arc<(TenantId, Source)>>);

impl Default for SourceCache {
    fn default() -> Self {
        Self(crate::auth::short_lived_cache())
    }
}

impl SourceCache {
    async fn get(
        &self,
        state: &AppState,
        id: &SourceId,
    ) -> Result<Option<Arc<(TenantId, Source)>>, ApiError> {
        if let Some(found) = self.0.get(id) {
            return Ok(Some(found));
        }
        let Some(found) = state.store.source_by_id(id).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        self.0.insert(id.clone(), found.clone());
        Ok(Some(found))
    }

    /// Forgets a source that was changed or deleted.
    pub fn forget(&self, id: &SourceId) {
        self.0.invalidate(id);
    }
}

/// What `/ingest` answers a request it accepted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestOut {
    /// The message the request became (for a duplicate, the first one).
    #[schema(example = "msg_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: Option<String>,
    #[schema(example = "payment_intent.succeeded")]
    pub event_type: String,
    /// `{provider}-{the provider's event id}`, what duplicates are found by;
    /// null when the source has no event id to go by.
    #[schema(example = "stripe-evt_1NG8Du2eZvKYlo2CT")]
    pub event_id: Option<String>,
    /// True when this event was received before: nothing new was stored.
    pub duplicate: bool,
}

/// Slack's URL verification answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestChallengeOut {
    pub challenge: String,
}

/// Why a request was refused, as the metric's `reason` label says it: a
/// fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    UnknownSource,
    TooLarge,
    /// The body arrived too slowly, or could not be read.
    Unreadable,
    MissingSignature,
    MalformedSignature,
    StaleTimestamp,
    BadSignature,
    InvalidBody,
    MissingEventType,
    InvalidEventType,
    MissingEventId,
    RateLimited,
    /// The database could not store it (a 5xx, not the sender's fault).
    Unavailable,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::UnknownSource => "unknown_source",
            Self::TooLarge => "too_large",
            Self::Unreadable => "unreadable",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::InvalidBody => "invalid_body",
            Self::MissingEventType => "missing_event_type",
            Self::InvalidEventType => "invalid_event_type",
            Self::MissingEventId => "missing_event_id",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A refusal: counted, logged with the source, answered with `error`.
struct Rejected {
    provider: Option<ProviderName>,
    reason: Reason,
    error: ApiError,
}

impl Rejected {
    fn new(provider: Option<ProviderName>, reason: Reason, error: ApiError) -> Self {
        Self {
            provider,
            reason,
            error,
        }
    }
}

/// The 401 of a signature that does not verify, with the reason it names.
fn signature_refused(provider: ProviderName, error: &SignatureError) -> Rejected {
    let (reason, code, detail) = match error {
        SignatureError::MissingHeader(name) => (
            Reason::MissingSignature,
            "signature_missing",
            format!("the request has no {name} header; {provider} signs every request with it"),
        ),
        SignatureError::MalformedHeader(name) => (
            Reason::MalformedSignature,
            "signature_malformed",
            format!("the {name} header cannot be read as a {provider} signature"),
        ),
        SignatureError::TimestampTooOld | SignatureError::TimestampTooNew => (
            Reason::StaleTimestamp,
            "signature_expired",
            "the signed timestamp is outside the source's tolerance (a replay, or a clock far off)"
                .to_owned(),
        ),
        _ => (
            Reason::BadSignature,
            "signature_invalid",
            "no signature in the request matches its body and the source's secret".to_owned(),
        ),
    };
    Rejected::new(
        Some(provider),
        reason,
        ApiError::SignatureRefused { code, detail },
    )
}

fn inbound_refused(provider: ProviderName, error: InboundError) -> Rejected {
    let (reason, code) = match &error {
        InboundError::NotAnObject => (Reason::InvalidBody, "invalid_body"),
        InboundError::MissingEventType(_) => (Reason::MissingEventType, "missing_event_type"),
        InboundError::InvalidEventType { .. } => (Reason::InvalidEventType, "invalid_event_type"),
        InboundError::MissingEventId(_) => (Reason::MissingEventId, "missing_event_id"),
    };
    Rejected::new(
        Some(provider),
        reason,
        ApiError::bad_request(code, error.to_string()),
    )
}

/// Receives a webhook from the provider of a source (Herald extension).
///
/// Not authenticated by a tenant key: the provider's signature, checked
/// with the source's secret, is the authentication. A verified request
/// becomes a message of the source's application (202); one whose event id
/// was received before is answered 200 and stored once; Slack's URL
/// verification is answered with its challenge.
#[utoipa::path(
    post, path = "/ingest/{source_id}", operation_id = "ingest.receive", tag = "Source",
    params(("source_id" = String, Path, description = "The source's id")),
    request_body(content = Object, description = "The provider's webhook, exactly as it sent it"),
    responses(
        (status = 200, body = IngestOut, description = "Received before (a duplicate): nothing new stored; or, for Slack's URL verification, `{\"challenge\": …}`"),
        (status = 202, body = IngestOut, description = "Stored as a message of the source's application"),
        (status = 400, body = HttpErrorOut, description = "Verified, but the body is not a JSON object or has no usable event type or event id"),
        (status = 401, body = HttpErrorOut, description = "The signature is missing, malformed, out of its time tolerance or does not match"),
        (status = 404, body = HttpErrorOut, description = "No such source"),
        (status = 408, body = HttpErrorOut),
        (status = 413, body = HttpErrorOut),
        (status = 429, body = HttpErrorOut, description = "The tenant is over its message rate"),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    PathParams(source_id): PathParams<String>,
    request: Request,
) -> Response {
    match receive(&state, &source_id, request).await {
        Ok(response) => response,
        Err(rejected) => {
            let provider = rejected.provider.map_or("unknown", ProviderName::as_str);
            crate::metrics::ingest_rejected(provider, rejected.reason.label());
            tracing::info!(
                source_id = %source_id,
                provider,
                reason = rejected.reason.label(),
                "inbound webhook refused"
            );
            rejected.error.into_response()
        }
    }
}

async fn receive(
    state: &AppState,
    source_id: &str,
    request: Request,
) -> Result<Response, Rejected> {
    let unknown = || Rejected::new(None, Reason::UnknownSource, ApiError::NotFound);
    let id = SourceId::parse(source_id).map_err(|_| unknown())?;
    let found = state
        .sources
        .get(state, &id)
        .await
        .map_err(|e| Rejected::new(None, Reason::Unavailable, e))?
        .ok_or_else(unknown)?;
    let (tenant_id, source) = (&found.0, &found.1);
    let provider = source.kind.name();
    let refuse = |reason, error| Rejected::new(Some(provider), reason, error);
    let (headers, body) = read(state, request).await.map_err(|e| {
        let reason = match e {
            ApiError::PayloadTooLarge | ApiError::PayloadOverLimit { .. } => Reason::TooLarge,
            _ => Reason::Unreadable,
        };
        refuse(reason, e)
    })?;

    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let tolerance = Duration::from_secs(u64::from(source.tolerance_seconds));
    source
        .kind
        .verify(
            &source.secret,
            lookup,
            &body,
            tolerance,
            herald_signature::unix_now(),
        )
        .map_err(|e| signature_refused(provider, &e))?;

    let text = std::str::from_utf8(&body).map_err(|_| {
        refuse(
            Reason::InvalidBody,
            ApiError::bad_request("invalid_body", "the body must be UTF-8 JSON"),
        )
    })?;
    let parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        refuse(
            Reason::InvalidBody,
            ApiError::bad_request(
                "invalid_body",
                format!("the body must be a JSON object (set the webhook's content type to application/json): {e}"),
            ),
        )
    })?;
    if let Some(challenge) = source.kind.challenge(&parsed) {
        crate::metrics::ingest_received(provider.as_str(), "challenge");
        let answer = IngestChallengeOut {
            challenge: challenge.to_owned(),
        };
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    let inbound = source
        .kind
        .inbound(lookup, &parsed)
        .map_err(|e| inbound_refused(provider, e))?;
    store(state, tenant_id, source, inbound, text).await
}

/// Reads the body within the body limits (`HERALD_MAX_BODY_BYTES`,
/// `HERALD_MAX_PAYLOAD_BYTES`) and the body timeout.
async fn read(state: &AppState, request: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = request.headers().clone();
    let timeout = request.extensions().get::<BodyTimeout>().copied();
    let reading = Bytes::from_request(request, state);
    let read = match timeout {
        Some(BodyTimeout(limit)) => tokio::time::timeout(limit, reading)
            .await
            .map_err(|_elapsed| ApiError::RequestTimeout)?,
        None => reading.await,
    };
    let body = read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })?;
    let limit = state.config.limits.max_payload_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadOverLimit {
            size: body.len(),
            limit,
        });
    }
    Ok((headers, body))
}

/// Stores a verified request as a message of the source's application.
async fn store(
    state: &AppState,
    tenant_id: &TenantId,
    source: &Source,
    inbound: Inbound,
    text: &str,
) -> Result<Response, Rejected> {
    let provider = source.kind.name();
    let refuse = |reason, error| Rejected::new(Some(provider), reason, error);
    state
        .message_rate
        .admit(tenant_id)
        .await
        .map_err(|e| refuse(Reason::RateLimited, e))?;
    // The application goes with its sources; a cached source may outlive
    // it by a second, and is then as unknown as the source.
    let (app, candidates) = state
        .accepter
        .candidates(tenant_id, &source.app_id)
        .await
        .map_err(|e| refuse(Reason::Unavailable, e.into()))?
        .ok_or_else(|| refuse(Reason::UnknownSource, ApiError::NotFound))?;
    let payload = RawValue::from_string(text.to_owned()).map_err(|e| {
        refuse(
            Reason::InvalidBody,
            ApiError::bad_request("invalid_body", format!("invalid JSON: {e}")),
        )
    })?;
    let event_id = inbound.event_id.clone();
    let post = Post {
        event_type: inbound.event_type.clone(),
        event_id: inbound.event_id,
        channels: None,
        tags: None,
        stored: text.as_bytes().to_vec(),
        payload,
        retention: state.config.payload_retention,
    };
    let app_id = app.id.clone();
    let stored = accept_message(state, tenant_id, app, candidates, post)
        .await
        .map_err(|e| refuse(Reason::Unavailable, e))?;
    let mut out = IngestOut {
        id: None,
        event_type: inbound.event_type.into_inner(),
        event_id: event_id.as_ref().map(|id| id.as_str().to_owned()),
        duplicate: false,
    };
    let status = match stored {
        Some(message) => {
            out.id = Some(message.id.to_string());
            crate::metrics::ingest_received(provider.as_str(), "stored");
            StatusCode::ACCEPTED
        }
        None => {
            // Only a taken eventId refuses a message: name the first one.
            out.duplicate = true;
            if let Some(key) = event_id
                .as_ref()
                .and_then(|id| IdOrUid::parse("eventId", id.as_str()).ok())
            {
                let first = state.store.message(tenant_id, &app_id, &key).await;
                out.id = first.ok().flatten().map(|m| m.id.to_string());
            }
            crate::metrics::ingest_received(provider.as_str(), "duplicate");
            StatusCode::OK
        }
    };
    Ok((status, Json(out)).into_response())
}
