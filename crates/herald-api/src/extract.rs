//! Request extractors that turn malformed input into Svix-shaped errors instead
//! of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use herald_core::ValidationError;

use crate::error::ApiError;

/// A JSON body. Syntax errors are 400 `invalid_json`; well-formed JSON of the
/// wrong shape is a 422 whose `loc` points at the offending field.
pub struct JsonBody<T>(pub T);

/// A JSON body deserialized in one pass from the raw bytes (see
/// [`parse_json_raw`]), for bodies carrying an opaque payload.
pub struct RawJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for RawJsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = read_body(req, state).await?;
        if !is_json {
            return Err(not_json());
        }
        parse_json_raw(&bytes).map(RawJsonBody)
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = read_body(req, state).await?;
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body whose fields are all optional: an empty body means `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (is_json, bytes) = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        if !is_json {
            return Err(not_json());
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType("expected a body with Content-Type: application/json".into())
}

/// How long a request body may take to arrive once it is read
/// (`HERALD_HTTP_BODY_TIMEOUT`); the router gives it to every request.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub std::time::Duration);

/// Reads the body within the configured size limit and time; says whether it
/// is JSON. The time is the whole body's, not a gap between two reads, so a
/// client trickling a byte now and then cannot hold the connection.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), ApiError> {
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
    let timeout = req.extensions().get::<BodyTimeout>().copied();
    let read = Bytes::from_request(req, state);
    let read = match timeout {
        Some(BodyTimeout(limit)) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_elapsed| ApiError::RequestTimeout)?,
        None => read.await,
    };
    let bytes = read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })?;
    Ok((is_json, bytes))
}

/// Deserializes `bytes`, reporting where in the document a problem is.
///
/// The body is parsed into a `Value` first so that syntax errors (400) are told
/// apart from shape errors (422), and so that strings containing NUL are refused
/// up front: PostgreSQL cannot store them in `text` or `jsonb`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse_checked(bytes)?;
    serde_path_to_error::deserialize::<_, T>(value).map_err(shape_error)
}

/// Like [`parse_json`], but in one pass straight from the bytes, so
/// `RawValue` fields keep the client's exact text and a large payload is never
/// built into a `Value` tree (this is the per-message path). It does not look
/// for NUL characters: every field of such a body must be a validated type or
/// opaque bytes.
pub fn parse_json_raw<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid_json =
        |e: &serde_json::Error| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}"));
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            invalid_json(inner)
        } else {
            shape_error(error)
        }
    })?;
    deserializer.end().map_err(|e| invalid_json(&e))?;
    Ok(value)
}

/// Parses `bytes` as JSON (400 if it is not) and refuses NUL characters (422).
fn parse_checked(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}")))?;
    if let Some(path) = find_nul(&value) {
        let mut loc = vec!["body".to_owned()];
        loc.extend(path);
        return Err(ApiError::Validation(vec![ValidationError {
            loc,
            msg: "must not contain NUL characters".into(),
            kind: "value_error",
        }]));
    }
    Ok(value)
}

fn shape_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ApiError {
    {
        let mut loc = vec!["body".to_owned()];
        loc.extend(
            error
                .path()
                .iter()
                .map(|segment| segment.to_string())
                .filter(|s| s != "?"),
        );
        let msg = error.inner().to_string();
        // serde reports a missing field on its parent; point at the field itself.
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            loc.push(field.to_owned());
        }
        ApiError::Validation(vec![ValidationError {
            loc,
            msg,
            kind: "type_error",
        }])
    }
}

/// The path to the first string (or object key) that contains a NUL character.
fn find_nul(value: &serde_json::Value) -> Option<Vec<String>> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(Vec::new()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            find_nul(item).map(|mut path| {
                path.insert(0, i.to_string());
                path
            })
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(vec![key.replace('\0', "\\u0000")]);
            }
            find_nul(item).map(|mut path| {
                path.insert(0, key.clone());
                path
            })
        }),
        _ => None,
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

/// Path parameters. A segment that does not decode (its percent-escapes are
/// not UTF-8) is a 422 at `["path", name]`, as a malformed id is, instead of
/// axum's plain-text 400.
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let kind = error.into_kind();
                let (key, msg) = match kind {
                    ErrorKind::InvalidUtf8InPathParam { key } => (
                        Some(key),
                        "must be valid UTF-8 once percent-decoded".to_owned(),
                    ),
                    ErrorKind::ParseErrorAtKey { ref key, .. }
                    | ErrorKind::DeserializeError { ref key, .. } => {
                        (Some(key.clone()), kind.to_string())
                    }
                    other => (None, other.to_string()),
                };
                let mut loc = vec!["path".to_owned()];
                loc.extend(key);
                Err(ApiError::Validation(vec![ValidationError {
                    loc,
                    msg,
                    kind: "value_error",
                }]))
            }
            // The route and the handler disagree on the parameters: a bug.
            Err(rejection) => Err(ApiError::Internal(anyhow::anyhow!(
                "path parameters: {}",
                rejection.body_text()
            ))),
        }
    }
}

fn url_form(input: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(input)
}
