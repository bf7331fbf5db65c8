//! The web console and app portal at `/console` (docs/console.md): its pages
//! and scripts, embedded in the binary, and its sessions.
//!
//! The pages are plain JavaScript modules that call the same `/api/v1` routes
//! the SDKs call. They authenticate with a session cookie instead of an
//! `Authorization` header: the tenant key or portal token is exchanged once
//! for a signed session (`POST /console/api/session`), and the credential
//! never stays in the page or the URL. [`session_principal`] turns the cookie
//! into the same [`Principal`] a bearer credential gives, so scoping and
//! capabilities are the API's own.

use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use rust_embed::RustEmbed;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use herald_core::{ApplicationId, TenantId};

use crate::auth::{app_token_principal, hash_api_key, tenant_of_key, Principal, SessionClaims};
use crate::capability::{AppPortalCapability, Capabilities};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::AppState;

/// The console's files (`crates/herald-api/console/`), embedded in every
/// build (`debug-embed`): what the tests drive is what a release serves.
#[derive(RustEmbed)]
#[folder = "console/"]
struct Assets;

/// The session cookie's name over http.
pub const COOKIE: &str = "herald_console";
/// Its name over https: the `__Host-` prefix makes browsers refuse it unless
/// it is `Secure`, host-only and for `/`, so a sibling subdomain cannot set
/// one over a session.
pub const SECURE_COOKIE: &str = "__Host-herald_console";
/// The header state-changing requests repeat the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-herald-csrf";
/// How long a session opened with a tenant key lasts.
const TENANT_SESSION_HOURS: i64 = 12;
/// The console's colour when the portal token names none.
const DEFAULT_ACCENT: &str = "#4f46e5";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/assets/{*path}", get(asset))
        .route(
            "/console/api/session",
            get(current_session)
                .post(open_session)
                .delete(close_session),
        )
}

/// The security headers of every console response: a strict CSP (no inline
/// script or style, nothing from another origin, framing only by the
/// configured ancestors), no sniffing, no referrer.
pub async fn security_headers(State(state): State<AppState>, mut response: Response) -> Response {
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {}",
        state.config.console_frame_ancestors
    );
    let headers = response.headers_mut();
    // The setting is checked at start-up; were it ever not a header value,
    // the page is still served with a policy, one nobody may frame.
    let value = HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        )
    });
    headers.insert(header::CONTENT_SECURITY_POLICY, value);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn index() -> Response {
    file("index.html", &HeaderMap::new())
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The page is only ever served at /console, where its relative links work.
    if path == "index.html" {
        return ApiError::NotFound.into_response();
    }
    file(&path, &headers)
}

/// One embedded file, revalidated by its hash (`ETag`) on every load: a
/// changed binary never serves a stale script from the browser's cache.
fn file(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /console/api/session`: exactly one of a tenant key and a portal token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionIn {
    key: Option<String>,
    token: Option<String>,
}

/// A session, as the pages see it (docs/console.md).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionOut {
    scope: &'static str,
    tenant_id: String,
    tenant_name: String,
    app_id: Option<String>,
    capabilities: Vec<AppPortalCapability>,
    read_only: bool,
    csrf_token: String,
    accent_color: String,
    expires_at: DateTime<Utc>,
}

async fn open_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<SessionIn>,
) -> Result<Response, ApiError> {
    let claims = match (input.key.as_deref(), input.token.as_deref()) {
        (Some(key), None) => {
            let hash = hash_api_key(key.trim());
            let tenant_id = tenant_of_key(&state, hash.clone()).await?;
            let expires_at = Utc::now() + chrono::Duration::hours(TENANT_SESSION_HOURS);
            SessionClaims {
                key: Some(hex::encode(hash)),
                ..SessionClaims::new(&tenant_id, expires_at)
            }
        }
        (None, Some(token)) => {
            let (principal, accent) = app_token_principal(&state, token.trim()).await?;
            let Principal::App {
                tenant_id,
                app_id,
                token_id,
                expires_at,
                capabilities,
            } = principal
            else {
                unreachable!("an app token names an application");
            };
            SessionClaims {
                app: Some(app_id.to_string()),
                token: Some(token_id),
                caps: capabilities.to_claim(),
                accent,
                ..SessionClaims::new(&tenant_id, expires_at)
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_credentials",
                "send either {\"key\": \"hsk_…\"} or {\"token\": \"…\"}",
            ))
        }
    };
    let secure = is_https(&state, &headers);
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    let cookie = Cookie::build((name, state.jwt.issue_session(&claims)?))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .expires(
            cookie::time::OffsetDateTime::from_unix_timestamp(claims.exp)
                .map_err(|e| ApiError::Internal(e.into()))?,
        )
        .build();
    let body = session_out(&state, &claims).await?;
    let mut response = Json(body).into_response();
    set_cookie(&mut response, &cookie);
    Ok(response)
}

async fn current_session(
    State(state): State<AppState>,
    mut parts: Parts,
) -> Result<Json<SessionOut>, ApiError> {
    let claims = verified_session(&mut parts, &state).await?;
    Ok(Json(session_out(&state, &claims).await?))
}

/// Signs out: the session is refused from now on, by every API process.
async fn close_session(
    State(state): State<AppState>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let claims = verified_session(&mut parts, &state).await?;
    let tenant_id = TenantId::parse(&claims.sub).map_err(|_| unauthorized())?;
    // A portal session's token goes too: signing out of the portal ends the
    // link it was opened with, not only this browser's session.
    for id in std::iter::once(&claims.jti).chain(claims.token.as_ref()) {
        state
            .revoked_tokens
            .revoke(&state, &tenant_id, id, claims.expires_at())
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [COOKIE, SECURE_COOKIE] {
        let mut cookie = Cookie::build((name, ""))
            .path("/")
            .http_only(true)
            .secure(name == SECURE_COOKIE)
            .build();
        cookie.make_removal();
        set_cookie(&mut response, &cookie);
    }
    Ok(response)
}

fn set_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Whether the browser reached the console over https: the configured public
/// URL says so, or the proxy in front does.
fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.public_url.starts_with("https://")
        || headers
            .get(HeaderName::from_static("x-forwarded-proto"))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn session_out(state: &AppState, claims: &SessionClaims) -> Result<SessionOut, ApiError> {
    let tenant_id = TenantId::parse(&claims.sub).map_err(|_| unauthorized())?;
    let tenant = state
        .store
        .tenant(&tenant_id)
        .await?
        .ok_or_else(unauthorized)?;
    let capabilities = Capabilities::from_claim(claims.caps.as_deref());
    Ok(SessionOut {
        scope: if claims.app.is_some() {
            "app"
        } else {
            "tenant"
        },
        tenant_id: claims.sub.clone(),
        tenant_name: tenant.name,
        app_id: claims.app.clone(),
        capabilities: capabilities.list(),
        read_only: capabilities.read_only(),
        csrf_token: claims.csrf.clone(),
        accent_color: claims
            .accent
            .clone()
            .unwrap_or_else(|| DEFAULT_ACCENT.to_owned()),
        expires_at: claims.expires_at(),
    })
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized("not signed in to the console".into())
}

/// The request's session cookie, if any: the `__Host-` one first.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let cookies: Vec<Cookie<'_>> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .collect();
    [SECURE_COOKIE, COOKIE].into_iter().find_map(|name| {
        cookies
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    })
}

/// The request's session, when its cookie is genuine, unexpired and not
/// signed out, and the key or token it was opened with is still good; a
/// state-changing request must also repeat the session's CSRF token.
async fn verified_session(parts: &mut Parts, state: &AppState) -> Result<SessionClaims, ApiError> {
    let cookie = session_cookie(&parts.headers).ok_or_else(|| {
        ApiError::Unauthorized("missing Authorization header or console session".into())
    })?;
    let claims = state
        .jwt
        .verify_session(&cookie)
        .ok_or_else(|| ApiError::Unauthorized("the console session expired".into()))?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(presented.ct_eq(claims.csrf.as_bytes())) {
            return Err(ApiError::refused(
                "csrf_failed",
                format!("a console request that changes something must carry the session's {CSRF_HEADER} header"),
            ));
        }
    }
    for id in std::iter::once(&claims.jti).chain(claims.token.as_ref()) {
        if state.revoked_tokens.is_revoked(state, id).await? {
            return Err(ApiError::Unauthorized(
                "the console session was signed out".into(),
            ));
        }
    }
    if let Some(key) = &claims.key {
        let hash = hex::decode(key).map_err(|_| unauthorized())?;
        if tenant_of_key(state, hash).await?.as_str() != claims.sub {
            return Err(unauthorized());
        }
    }
    Ok(claims)
}

/// The caller a console session cookie names: the tenant, or the portal's
/// application with its token's capabilities.
pub(crate) async fn session_principal(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Principal, ApiError> {
    let claims = verified_session(parts, state).await?;
    let tenant_id = TenantId::parse(&claims.sub).map_err(|_| unauthorized())?;
    Ok(match &claims.app {
        None => Principal::Tenant { tenant_id },
        Some(app) => Principal::App {
            tenant_id,
            app_id: ApplicationId::parse(app).map_err(|_| unauthorized())?,
            expires_at: claims.expires_at(),
            capabilities: Capabilities::from_claim(claims.caps.as_deref()),
            token_id: claims.jti,
        },
    })
}
