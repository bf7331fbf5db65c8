//! Request extractors that turn malformed input into Svix-shaped errors instead
//! of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use herald_core::ValidationError;

use crate::error::ApiError;

/// A JSON body. Syntax errors are 400 `invalid_json`; well-formed JSON of the
/// wrong shape is a 422 whose `loc` points at the offending field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserializes `bytes`, reporting where in the document a type error is.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}")))?;
            Ok(value)
        }
        Err(error) => {
            let inner = error.inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::bad_request(
                    "invalid_json",
                    format!("invalid JSON: {inner}"),
                ));
            }
            let mut loc = vec!["body".to_owned()];
            loc.extend(
                error
                    .path()
                    .iter()
                    .map(|segment| segment.to_string())
                    .filter(|s| s != "?"),
            );
            // serde_json appends " at line L column C"; the location is in `loc`.
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            Err(ApiError::Validation(vec![ValidationError {
                loc,
                msg,
                kind: "type_error",
            }]))
        }
    }
}

/// A query string, with type errors reported as 422 at `["query", field]`.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(url_form(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(deserializer)
            .map(QueryParams)
            .map_err(|error| {
                let mut loc = vec!["query".to_owned()];
                loc.extend(
                    error
                        .path()
                        .iter()
                        .map(|s| s.to_string())
                        .filter(|s| s != "?"),
                );
                ApiError::Validation(vec![ValidationError {
                    loc,
                    msg: error.inner().to_string(),
                    kind: "type_error",
                }])
            })
    }
}

fn url_form(input: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(input)
}
