//! Who is calling: a tenant (by API key), an application (by an app-scoped JWT
//! from `/api/v1/auth/app-portal-access`), or an operator (by the admin token).

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use herald_core::{ApiKeyId, ApplicationId, TenantId};
use herald_store::{ApiKey, Application};

use crate::capability::{AppPortalCapability, Capabilities};
use crate::error::ApiError;
use crate::AppState;

/// Every API key starts with this, so leaked keys are easy to grep for.
pub const API_KEY_PREFIX: &str = "hsk_";
/// How many leading characters of a key are stored and shown.
const SHOWN_PREFIX_LEN: usize = 12;

/// SHA-256 of a presented key. Keys are 190 random bits, so a fast hash is
/// enough: there is nothing to brute-force that a slow hash would protect.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// How long a looked-up API key is trusted without asking the database again.
/// A key revoked through this process stops working at once; one revoked
/// through another API process, within this time.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Recently seen valid API keys (by hash) and their tenants: under load the
/// same few keys arrive thousands of times a second, and each lookup would be
/// a database round trip.
#[derive(Clone)]
pub struct KeyCache(moka::sync::Cache<Vec<u8>, TenantId>);

/// A cache of up to 10,000 answers, each trusted for [`KEY_CACHE_TTL`].
pub(crate) fn short_lived_cache<K, V>() -> moka::sync::Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(KEY_CACHE_TTL)
        .build()
}

impl Default for KeyCache {
    fn default() -> Self {
        Self(short_lived_cache())
    }
}

impl KeyCache {
    /// Forgets every key: after a revocation.
    pub fn clear(&self) {
        self.0.invalidate_all();
    }
}

/// Creates a new key for `tenant_id`: the plaintext (shown once) and the record.
pub fn new_api_key(tenant_id: &TenantId, name: &str) -> (String, ApiKey) {
    let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
    let key = format!("{API_KEY_PREFIX}{secret}");
    let record = ApiKey {
        id: ApiKeyId::new(),
        tenant_id: tenant_id.clone(),
        name: name.to_owned(),
        prefix: key[..SHOWN_PREFIX_LEN].to_owned(),
        key_hash: hash_api_key(&key),
        created_at: herald_store::now(),
        revoked_at: None,
    };
    (key, record)
}

/// The signing keys of app-scoped tokens (HS256).
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// Claims of an app-scoped token.
#[derive(Debug, Serialize, Deserialize)]
struct AppClaims {
    iss: String,
    /// The application the token is limited to.
    sub: String,
    /// The tenant that owns the application.
    tenant: String,
    /// The token's own id, which logging out revokes. Tokens issued before
    /// logout existed have none; they are known by a hash of their text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    iat: i64,
    /// Not valid before this time (RFC 7519 §4.1.5), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    exp: i64,
    /// What the token may do; absent for an unrestricted token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caps: Option<Vec<AppPortalCapability>>,
    /// The portal's accent colour (`#rrggbb`), when the tenant chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accent: Option<String>,
}

/// A verified app-scoped token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub tenant_id: TenantId,
    pub app_id: ApplicationId,
    /// What logging out records to revoke this token.
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
    pub capabilities: Capabilities,
    pub accent: Option<String>,
}

/// What an app-scoped token is issued for, besides its application.
#[derive(Debug, Clone)]
pub struct AppGrant {
    pub expires_at: DateTime<Utc>,
    pub capabilities: Capabilities,
    pub accent: Option<String>,
}

const ISSUER: &str = "herald";
/// How far back a token's `nbf` is set: the clock skew between API processes
/// that a fresh token tolerates.
const NBF_SKEW_SECONDS: i64 = 60;

impl JwtKeys {
    /// Issues a token that can only see `app` of `tenant_id`, as `grant` says.
    pub fn issue_app_token(
        &self,
        tenant_id: &TenantId,
        app: &Application,
        grant: &AppGrant,
    ) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = AppClaims {
            iss: ISSUER.into(),
            sub: app.id.to_string(),
            tenant: tenant_id.to_string(),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            iat: now,
            // A minute early, so an API process whose clock is a little behind
            // the issuer's does not refuse a token it is handed at once.
            nbf: Some(now - NBF_SKEW_SECONDS),
            exp: grant.expires_at.timestamp(),
            caps: grant.capabilities.to_claim(),
            accent: grant.accent.clone(),
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The claims of a token signed by these keys for `issuer`, when its
    /// signature, issuer, expiry and (when present) `nbf` hold.
    fn verify<T: serde::de::DeserializeOwned>(&self, token: &str, issuer: &str) -> Option<T> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// Signs a console session.
    pub(crate) fn issue_session(&self, claims: &SessionClaims) -> Result<String, ApiError> {
        self.sign(claims)
    }

    /// A console session's claims, when its cookie is genuine and unexpired.
    pub(crate) fn verify_session(&self, cookie: &str) -> Option<SessionClaims> {
        self.verify(cookie, SESSION_ISSUER)
    }

    /// Checks the signature, issuer, expiry and (when present) `nbf` of an
    /// app-scoped token; not whether it was logged out.
    pub fn verify_app_token(&self, token: &str) -> Option<AppToken> {
        let claims: AppClaims = self.verify(token, ISSUER)?;
        let token_id = claims
            .jti
            .unwrap_or_else(|| hex::encode(Sha256::digest(token.as_bytes())));
        Some(AppToken {
            tenant_id: TenantId::parse(&claims.tenant).ok()?,
            app_id: ApplicationId::parse(&claims.sub).ok()?,
            token_id,
            expires_at: DateTime::from_timestamp(claims.exp, 0)?,
            capabilities: Capabilities::from_claim(claims.caps.as_deref()),
            accent: claims.accent,
        })
    }
}

/// The issuer of console sessions: a session cookie is not an app token, and
/// an app token is not a session cookie.
const SESSION_ISSUER: &str = "herald-console";

/// Claims of a console session (the `herald_console` cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionClaims {
    pub iss: String,
    /// The tenant.
    pub sub: String,
    /// The application of a portal session; absent for a tenant's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// A tenant session's API key, by its SHA-256 (hex): the session ends
    /// when the key is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A portal session's token id: the session ends when it is logged out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<AppPortalCapability>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent: Option<String>,
    /// What state-changing requests must repeat in `X-Herald-Csrf`.
    pub csrf: String,
    /// The session's own id, which signing out revokes.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

impl SessionClaims {
    pub(crate) fn new(tenant_id: &TenantId, expires_at: DateTime<Utc>) -> Self {
        Self {
            iss: SESSION_ISSUER.into(),
            sub: tenant_id.to_string(),
            app: None,
            key: None,
            token: None,
            caps: None,
            accent: None,
            csrf: Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iat: Utc::now().timestamp(),
            exp: expires_at.timestamp(),
        }
    }

    pub(crate) fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_else(Utc::now)
    }
}

/// The authenticated caller of an `/api/v1` route.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A tenant's API key: full access to the tenant's objects.
    Tenant { tenant_id: TenantId },
    /// An app-scoped token: one application of one tenant, nothing org-level.
    App {
        tenant_id: TenantId,
        app_id: ApplicationId,
        /// Which token it is, so it can be logged out.
        token_id: String,
        expires_at: DateTime<Utc>,
        /// What it may do.
        capabilities: Capabilities,
    },
}

impl Principal {
    pub fn tenant_id(&self) -> &TenantId {
        match self {
            Principal::Tenant { tenant_id } | Principal::App { tenant_id, .. } => tenant_id,
        }
    }

    /// Refuses app-scoped tokens on routes that act on the whole tenant.
    pub fn require_org(&self) -> Result<&TenantId, ApiError> {
        match self {
            Principal::Tenant { tenant_id } => Ok(tenant_id),
            Principal::App { .. } => Err(ApiError::Forbidden(
                "an application token cannot use organisation-level routes".into(),
            )),
        }
    }

    /// Refuses (403 `insufficient_capability`) an app-scoped caller without
    /// `capability`; a tenant has them all.
    pub fn require(&self, capability: AppPortalCapability) -> Result<(), ApiError> {
        match self {
            Principal::App { capabilities, .. } if !capabilities.has(capability) => {
                Err(crate::capability::missing(capability))
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may see `app_id`. An app token asking for another
    /// application gets the same 404 as for an application that does not exist.
    pub fn can_see(&self, app_id: &ApplicationId) -> bool {
        match self {
            Principal::Tenant { .. } => true,
            Principal::App {
                app_id: allowed, ..
            } => allowed == app_id,
        }
    }
}

/// The request's one `Authorization` header, if any. Several are refused with
/// 400, not resolved by picking one: a proxy that authorises on the last and
/// Herald on the first would disagree about who is calling.
pub(crate) fn authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "duplicate_authorization",
            "send exactly one Authorization header",
        ));
    }
    Ok(first)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_of(header: &HeaderValue) -> Result<&str, ApiError> {
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("expected 'Authorization: Bearer <key>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected 'Authorization: Bearer <key>'".into(),
        ));
    }
    Ok(token.trim())
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = authorization(&parts.headers)?
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    bearer_of(header)
}

/// The tenant whose (unrevoked) API key hashes to `hash`.
pub(crate) async fn tenant_of_key(state: &AppState, hash: Vec<u8>) -> Result<TenantId, ApiError> {
    if let Some(tenant_id) = state.api_keys.0.get(&hash) {
        return Ok(tenant_id);
    }
    let key = state
        .store
        .api_key_by_hash(&hash)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid or revoked API key".into()))?;
    state.api_keys.0.insert(hash, key.tenant_id.clone());
    Ok(key.tenant_id)
}

/// The caller an app-scoped token names, unless it was logged out.
pub(crate) async fn app_token_principal(
    state: &AppState,
    token: &str,
) -> Result<(Principal, Option<String>), ApiError> {
    let token = state
        .jwt
        .verify_app_token(token)
        .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
    if state
        .revoked_tokens
        .is_revoked(state, &token.token_id)
        .await?
    {
        return Err(ApiError::Unauthorized("token was logged out".into()));
    }
    let principal = Principal::App {
        tenant_id: token.tenant_id,
        app_id: token.app_id,
        token_id: token.token_id,
        expires_at: token.expires_at,
        capabilities: token.capabilities,
    };
    Ok((principal, token.accent))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let principal = match authorization(&parts.headers)? {
            Some(header) => {
                let token = bearer_of(header)?;
                // API keys never contain dots; a JWT always has exactly two.
                if token.matches('.').count() == 2 {
                    app_token_principal(state, token).await?.0
                } else {
                    Principal::Tenant {
                        tenant_id: tenant_of_key(state, hash_api_key(token)).await?,
                    }
                }
            }
            // Without an Authorization header, the console's session cookie.
            None => crate::console::session_principal(parts, state).await?,
        };
        if let Principal::App { capabilities, .. } = &principal {
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            capabilities.check(&parts.method, route)?;
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// The caller of a route that acts on the whole tenant, which only a tenant
/// API key may use. An app-scoped token is refused (403) as the request is
/// extracted, before its query or body is read, so such a token learns
/// nothing from those routes' validation errors.
pub struct OrgPrincipal(pub Principal);

impl FromRequestParts<AppState> for OrgPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require_org()?;
        Ok(Self(principal))
    }
}

/// App-scoped tokens that were logged out, as the store records them, with
/// the answers of the last second cached: portal pages send many requests
/// with one token. A logout through this process takes effect at once;
/// through another API process, within [`KEY_CACHE_TTL`].
#[derive(Clone)]
pub struct RevokedTokens(moka::sync::Cache<String, bool>);

impl Default for RevokedTokens {
    fn default() -> Self {
        Self(short_lived_cache())
    }
}

impl RevokedTokens {
    pub(crate) async fn is_revoked(
        &self,
        state: &AppState,
        token_id: &str,
    ) -> Result<bool, ApiError> {
        if let Some(revoked) = self.0.get(token_id) {
            return Ok(revoked);
        }
        let revoked = state.store.token_revoked(token_id).await?;
        self.0.insert(token_id.to_owned(), revoked);
        Ok(revoked)
    }

    /// Revokes an app-scoped token until it expires.
    pub async fn revoke(
        &self,
        state: &AppState,
        tenant_id: &TenantId,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        state
            .store
            .revoke_token(tenant_id, token_id, expires_at)
            .await?;
        self.0.insert(token_id.to_owned(), true);
        Ok(())
    }
}

/// The operator, authorised by `HERALD_ADMIN_TOKEN` on `/admin/v1` routes.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Without a configured token the admin API does not exist.
        let Some(expected) = state.config.admin_token.as_deref() else {
            return Err(ApiError::NotFound);
        };
        let token = bearer_token(parts)?;
        if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("invalid admin token".into()))
        }
    }
}
