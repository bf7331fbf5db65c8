//! `ApiError`: the one error type of the HTTP layer, rendered in Svix's shapes:
//! `{code, detail}` for most errors and `{detail: [{loc, msg, type}]}` for 422.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use herald_cache::CacheError;
use herald_core::ValidationError;
use herald_store::StoreError;

/// The body of every non-validation error (Svix's `HttpErrorOut`).
#[derive(Debug, Serialize, ToSchema)]
pub struct HttpErrorOut {
    pub code: String,
    pub detail: String,
}

/// One validation problem (Svix's `ValidationErrorItem`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrorItem {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The body of a 422 (Svix's `HTTPValidationError`).
#[derive(Debug, Serialize, ToSchema)]
pub struct HttpValidationError {
    pub detail: Vec<ValidationErrorItem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    /// 401 for a request a signature authenticates (`/ingest`), with the
    /// reason as its code.
    #[error("{detail}")]
    SignatureRefused { code: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    /// Forbidden, with a more precise code than `insufficient_access`.
    #[error("{detail}")]
    Refused { code: &'static str, detail: String },
    #[error("entity not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("validation failed")]
    Validation(Vec<ValidationError>),
    #[error("request body too large")]
    PayloadTooLarge,
    /// A message payload over the tenants' limit.
    #[error("payload of {size} bytes is over the limit of {limit}")]
    PayloadOverLimit { size: usize, limit: usize },
    #[error("request body timed out")]
    RequestTimeout,
    /// Over a rate limit; the caller may try again `retry_after` seconds on.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(detail.into())
    }

    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Refused {
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// The same error, with body locations moved under the object `field`
    /// (for input nested inside another request body).
    pub fn nested_in(self, field: &str) -> Self {
        match self {
            Self::Validation(errors) => Self::Validation(
                errors
                    .into_iter()
                    .map(|mut e| {
                        if e.loc.first().is_some_and(|l| l == "body") {
                            e.loc.insert(1, field.to_owned());
                        }
                        e
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// A single-field validation failure.
    pub fn invalid(error: ValidationError) -> Self {
        Self::Validation(vec![error])
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::invalid(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => Self::Unavailable(format!("database: {e}")),
            StoreError::Conflict { constraint } => {
                Self::Conflict(format!("conflicts with an existing object ({constraint})"))
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::Unavailable(e) => Self::Unavailable(format!("cache: {e}")),
            other => Self::Internal(other.into()),
        }
    }
}

fn error_body(status: StatusCode, code: &str, detail: String) -> Response {
    (
        status,
        Json(HttpErrorOut {
            code: code.to_owned(),
            detail,
        }),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest { code, detail } => error_body(StatusCode::BAD_REQUEST, code, detail),
            Self::Unauthorized(detail) => {
                error_body(StatusCode::UNAUTHORIZED, "authentication_failed", detail)
            }
            Self::SignatureRefused { code, detail } => {
                error_body(StatusCode::UNAUTHORIZED, code, detail)
            }
            Self::Forbidden(detail) => {
                error_body(StatusCode::FORBIDDEN, "insufficient_access", detail)
            }
            Self::Refused { code, detail } => error_body(StatusCode::FORBIDDEN, code, detail),
            Self::NotFound => error_body(
                StatusCode::NOT_FOUND,
                "not_found",
                "Entity not found".into(),
            ),
            Self::MethodNotAllowed => error_body(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not support the request's method".into(),
            ),
            Self::Conflict(detail) => error_body(StatusCode::CONFLICT, "conflict", detail),
            Self::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(HttpValidationError {
                    detail: errors
                        .into_iter()
                        .map(|e| ValidationErrorItem {
                            loc: e.loc,
                            msg: e.msg,
                            kind: e.kind.to_owned(),
                        })
                        .collect(),
                }),
            )
                .into_response(),
            Self::PayloadTooLarge => error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body exceeds the configured size limit".into(),
            ),
            Self::TooManyRequests {
                detail,
                retry_after,
            } => {
                let mut response =
                    error_body(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", detail);
                if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                response
            }
            Self::PayloadOverLimit { size, limit } => error_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the payload is {size} bytes; this server accepts at most {limit}"),
            ),
            Self::RequestTimeout => {
                let mut response = error_body(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive within the time allowed".into(),
                );
                // RFC 9110 §15.5.9: a 408 closes the connection; the rest of
                // the body is never read.
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                response
            }
            Self::UnsupportedMediaType(detail) => error_body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                detail,
            ),
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable");
                let mut response = error_body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "a backing service is unavailable; retry later".into(),
                );
                // Backing services come back within seconds when they restart.
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                response
            }
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal server error".into(),
                )
            }
        }
    }
}

/// Answers unknown routes in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Answers a known route called with an unsupported method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
