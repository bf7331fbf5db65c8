//! Sources (a Herald extension): where a tenant receives webhooks from a
//! provider. Each source has an ingest URL (`POST /ingest/{source_id}`,
//! `crate::ingest`) to give the provider, the secret requests are verified
//! with, and the application whose messages they become.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::source::{
    HmacSource, Locator, SourceKind, SourceSecret, DEFAULT_TOLERANCE_SECONDS, MAX_TOLERANCE_SECONDS,
};
use herald_core::{IdOrUid, SourceId, TenantId, ValidationError};
use herald_signature::{Algorithm, Encoding, HmacScheme};
use herald_store::{Application, Source};

use crate::auth::OrgPrincipal;
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::endpoint::{parse_description, MAX_WRITE_ATTEMPTS};
use crate::v1::nullable;
use crate::v1::signing::{HmacAlgorithm, HmacEncoding};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/source", get(list_sources).post(create_source))
        .route(
            "/api/v1/source/{source_id}",
            get(get_source).patch(patch_source).delete(delete_source),
        )
        .route("/api/v1/source/{source_id}/secret", get(get_source_secret))
}

/// The provider of a source, as the API names it (herald-core's
/// `ProviderName`, which documents each).
pub use herald_core::source::ProviderName as SourceProvider;

/// Where a value is read from a request: exactly one of `pointer`, a JSON
/// pointer into the body (RFC 6901, e.g. `/type` or `/data/kind`), and
/// `header`, a header name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceLocator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "/type", max_length = 256)]
    pub pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub header: Option<String>,
}

/// The signature of an `hmac` source:
/// `<header>: <prefix><encoding(HMAC-<algorithm>(secret, body))>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceHmacOptions {
    /// The header the provider sends its signature in.
    #[schema(example = "X-Signature", max_length = 256)]
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    #[serde(default)]
    pub encoding: HmacEncoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "sha256=", max_length = 64)]
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceIn {
    /// The application (id or uid) whose messages the provider's webhooks become.
    #[schema(example = "app_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub app_id: String,
    pub provider: SourceProvider,
    /// The secret the provider signs with, as it shows it (Stripe's `whsec_…`
    /// signing secret, Slack's signing secret, Shopify's app secret, the
    /// secret you gave GitHub). Required for `stripe`, `shopify` and `slack`;
    /// generated (`whsec_…`) for the others when omitted. A `standard`
    /// secret is `whsec_` and base64.
    pub secret: Option<String>,
    /// How far (seconds) a signed timestamp may be from Herald's clock for
    /// `stripe`, `slack` and `standard`; 1–86400, default 300. The other
    /// providers sign no timestamp.
    pub tolerance_seconds: Option<u32>,
    #[serde(default)]
    pub description: String,
    /// Only for `hmac`, which needs it.
    pub hmac: Option<SourceHmacOptions>,
    /// Only for `standard` and `hmac`: where the event type is (default the
    /// body's `/type`).
    pub event_type: Option<SourceLocator>,
    /// Only for `hmac`: where the provider's event id is. Without one nothing
    /// is deduplicated.
    pub event_id: Option<SourceLocator>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Changes to a source; what is omitted stays. When the provider changes,
/// the old provider's `hmac`, `eventType` and `eventId` are dropped unless
/// given again.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourcePatch {
    pub app_id: Option<String>,
    pub provider: Option<SourceProvider>,
    /// A new secret; the old one stops verifying at once.
    pub secret: Option<String>,
    pub tolerance_seconds: Option<u32>,
    pub description: Option<String>,
    pub hmac: Option<SourceHmacOptions>,
    pub event_type: Option<SourceLocator>,
    /// Null stops deduplicating an `hmac` source.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<SourceLocator>, nullable)]
    pub event_id: Option<Option<SourceLocator>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceOut {
    #[schema(example = "src_2f1XexampleKsuidOf27chars")]
    pub id: String,
    /// The application whose messages the webhooks become.
    pub app_id: String,
    pub provider: SourceProvider,
    pub description: String,
    pub tolerance_seconds: u32,
    /// The `hmac` source's signature; null for the others.
    pub hmac: Option<SourceHmacOptions>,
    /// Where a `standard` or `hmac` source reads the event type; null for
    /// the others, which read it where their provider puts it.
    pub event_type: Option<SourceLocator>,
    /// Where an `hmac` source reads the event id; null otherwise.
    pub event_id: Option<SourceLocator>,
    pub metadata: BTreeMap<String, String>,
    /// What to give the provider as its webhook URL.
    #[schema(example = "https://herald.example.com/ingest/src_2f1XexampleKsuidOf27chars")]
    pub ingest_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SourceSecretOut {
    /// The secret requests are verified with.
    pub key: String,
}

/// Every setting of a source on the wire, before it is checked as a whole.
struct Draft {
    app_id: String,
    provider: SourceProvider,
    secret: Option<String>,
    tolerance_seconds: Option<u32>,
    description: String,
    hmac: Option<SourceHmacOptions>,
    event_type: Option<SourceLocator>,
    event_id: Option<SourceLocator>,
    metadata: BTreeMap<String, String>,
}

/// A draft checked: what a [`Source`] is made of, but its id and times.
struct Checked {
    app: Application,
    kind: SourceKind,
    secret: SourceSecret,
    tolerance_seconds: u32,
    description: String,
    metadata: BTreeMap<String, String>,
}

fn locator(given: SourceLocator, field: &str) -> Result<Locator, ValidationError> {
    Locator::parse(given.pointer, given.header, field)
}

fn locator_out(locator: &Locator) -> SourceLocator {
    match locator {
        Locator::Pointer(pointer) => SourceLocator {
            pointer: Some(pointer.clone()),
            header: None,
        },
        Locator::Header(header) => SourceLocator {
            pointer: None,
            header: Some(header.clone()),
        },
    }
}

fn hmac_scheme(options: &SourceHmacOptions) -> Result<HmacScheme, ValidationError> {
    let at = |msg: String| ValidationError::new("hmac", msg).at(&["body", "hmac", "header"]);
    if options.header.len() > Locator::MAX_LEN {
        return Err(at("must be at most 256 characters long".into()));
    }
    let algorithm = options.algorithm.into();
    let encoding = options.encoding.into();
    HmacScheme::new(options.header.clone(), algorithm, encoding).map_err(|e| at(e.to_string()))
}

fn hmac_out(hmac: &HmacSource) -> SourceHmacOptions {
    SourceHmacOptions {
        header: hmac.signature.header().to_owned(),
        algorithm: match hmac.signature.algorithm() {
            Algorithm::Sha256 => HmacAlgorithm::Sha256,
            Algorithm::Sha384 => HmacAlgorithm::Sha384,
            Algorithm::Sha512 => HmacAlgorithm::Sha512,
            Algorithm::Sha1 => HmacAlgorithm::Sha1,
        },
        encoding: match hmac.signature.encoding() {
            Encoding::Hex => HmacEncoding::Hex,
            Encoding::Base64 => HmacEncoding::Base64,
        },
        prefix: hmac.prefix.clone(),
    }
}

/// The provider and its settings a draft describes.
fn kind_of(draft: &Draft) -> Result<SourceKind, ValidationError> {
    use SourceProvider::{Hmac, Standard};
    let provider = draft.provider;
    let only = |field: &str, given: bool, allowed: &[SourceProvider]| {
        if given && !allowed.contains(&provider) {
            let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
            return Err(ValidationError::new(
                field,
                format!("only a {} source takes it", names.join(" or ")),
            ));
        }
        Ok(())
    };
    only("hmac", draft.hmac.is_some(), &[Hmac])?;
    only("eventType", draft.event_type.is_some(), &[Standard, Hmac])?;
    only("eventId", draft.event_id.is_some(), &[Hmac])?;
    let event_type = || {
        draft
            .event_type
            .clone()
            .map(|l| locator(l, "eventType"))
            .transpose()
            .map(|l| l.unwrap_or_else(Locator::default_event_type))
    };
    Ok(match provider {
        SourceProvider::Stripe => SourceKind::Stripe,
        SourceProvider::Github => SourceKind::Github,
        SourceProvider::Shopify => SourceKind::Shopify,
        SourceProvider::Slack => SourceKind::Slack,
        SourceProvider::Standard => SourceKind::Standard {
            event_type: event_type()?,
        },
        SourceProvider::Hmac => {
            let options = draft
                .hmac
                .as_ref()
                .ok_or_else(|| ValidationError::new("hmac", "an hmac source needs its header"))?;
            if let Some(prefix) = &options.prefix {
                if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(char::is_control) {
                    return Err(
                        ValidationError::new("hmac", "prefix must be 1 to 64 characters")
                            .at(&["body", "hmac", "prefix"]),
                    );
                }
            }
            SourceKind::Hmac(HmacSource {
                signature: hmac_scheme(options)?,
                prefix: options.prefix.clone(),
                event_type: event_type()?,
                event_id: draft
                    .event_id
                    .clone()
                    .map(|l| locator(l, "eventId"))
                    .transpose()?,
            })
        }
    })
}

/// The application a body names by id or uid; 422 at `appId` when the
/// tenant has none such.
async fn named_app(
    state: &AppState,
    tenant_id: &TenantId,
    app_id: &str,
) -> Result<Application, ApiError> {
    let missing = || ValidationError::new("appId", "no application has this id or uid");
    let app_ref =
        IdOrUid::parse("appId", app_id).map_err(|e| ValidationError::new("appId", e.msg))?;
    state
        .store
        .application(tenant_id, &app_ref)
        .await?
        .ok_or_else(|| ApiError::from(missing()))
}

async fn check(state: &AppState, tenant_id: &TenantId, draft: Draft) -> Result<Checked, ApiError> {
    let kind = kind_of(&draft)?;
    let name = kind.name();
    let tolerance_seconds = draft.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
    if !(1..=MAX_TOLERANCE_SECONDS).contains(&tolerance_seconds) {
        return Err(ValidationError::new(
            "toleranceSeconds",
            format!("must be between 1 and {MAX_TOLERANCE_SECONDS}"),
        )
        .into());
    }
    let secret = match draft.secret {
        Some(secret) => SourceSecret::parse(name, secret)?,
        None if name.issues_secret() => {
            return Err(ValidationError::new(
                "secret",
                format!("a {name} source needs the signing secret {name} shows for the webhook"),
            )
            .into())
        }
        None => SourceSecret::generate(),
    };
    let description = parse_description(draft.description)?;
    let app = named_app(state, tenant_id, &draft.app_id).await?;
    Ok(Checked {
        app,
        kind,
        secret,
        tolerance_seconds,
        description,
        metadata: draft.metadata,
    })
}

impl SourceOut {
    fn new(source: Source, public_url: &str) -> Self {
        let (hmac, event_type, event_id) = match &source.kind {
            SourceKind::Standard { event_type } => (None, Some(locator_out(event_type)), None),
            SourceKind::Hmac(hmac) => (
                Some(hmac_out(hmac)),
                Some(locator_out(&hmac.event_type)),
                hmac.event_id.as_ref().map(locator_out),
            ),
            _ => (None, None, None),
        };
        Self {
            ingest_url: format!("{}/ingest/{}", public_url.trim_end_matches('/'), source.id),
            id: source.id.to_string(),
            app_id: source.app_id.to_string(),
            provider: source.kind.name(),
            description: source.description,
            tolerance_seconds: source.tolerance_seconds,
            hmac,
            event_type,
            event_id,
            metadata: source.metadata,
            created_at: source.created_at,
            updated_at: source.updated_at,
        }
    }
}

/// The source named by a path segment, of the caller's tenant; 404 otherwise.
async fn visible_source(
    state: &AppState,
    tenant_id: &TenantId,
    source_id: &str,
) -> Result<Source, ApiError> {
    IdOrUid::parse("source_id", source_id)?;
    let Ok(id) = SourceId::parse(source_id) else {
        return Err(ApiError::NotFound);
    };
    state
        .store
        .source(tenant_id, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Lists the tenant's sources (Herald extension).
#[utoipa::path(
    get, path = "/api/v1/source", operation_id = "v1.source.list", tag = "Source",
    params(ListParams),
    responses(
        (status = 200, body = ListResponse<SourceOut>),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_sources(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<ListResponse<SourceOut>>, ApiError> {
    let tenant_id = principal.require_org()?;
    let query = params.to_query_newest_first(|k| SourceId::parse(k).is_ok())?;
    let page = state.store.list_sources(tenant_id, &query).await?;
    let public_url = state.config.public_url.clone();
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |s| s.id.to_string(),
        |s| SourceOut::new(s, &public_url),
    )))
}

/// Creates a source (Herald extension): give its `ingestUrl` to the provider.
#[utoipa::path(
    post, path = "/api/v1/source", operation_id = "v1.source.create", tag = "Source",
    request_body = SourceIn,
    responses(
        (status = 201, body = SourceOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_source(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    JsonBody(input): JsonBody<SourceIn>,
) -> Result<(StatusCode, Json<SourceOut>), ApiError> {
    let tenant_id = principal.require_org()?;
    let draft = Draft {
        app_id: input.app_id,
        provider: input.provider,
        secret: input.secret,
        tolerance_seconds: input.tolerance_seconds,
        description: input.description,
        hmac: input.hmac,
        event_type: input.event_type,
        event_id: input.event_id,
        metadata: input.metadata.unwrap_or_default(),
    };
    let checked = check(&state, tenant_id, draft).await?;
    let now = herald_store::now();
    let source = Source {
        id: SourceId::new(),
        app_id: checked.app.id,
        description: checked.description,
        kind: checked.kind,
        secret: checked.secret,
        tolerance_seconds: checked.tolerance_seconds,
        metadata: checked.metadata,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_source(tenant_id, &source).await?;
    let out = SourceOut::new(source, &state.config.public_url);
    Ok((StatusCode::CREATED, Json(out)))
}

/// Gets a source (Herald extension).
#[utoipa::path(
    get, path = "/api/v1/source/{source_id}", operation_id = "v1.source.get", tag = "Source",
    params(("source_id" = String, Path, description = "The source's id")),
    responses(
        (status = 200, body = SourceOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_source(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(source_id): PathParams<String>,
) -> Result<Json<SourceOut>, ApiError> {
    let tenant_id = principal.require_org()?;
    let source = visible_source(&state, tenant_id, &source_id).await?;
    Ok(Json(SourceOut::new(source, &state.config.public_url)))
}

/// Changes a source (Herald extension); the change applies to the next
/// request the provider sends (within a second on other API processes).
#[utoipa::path(
    patch, path = "/api/v1/source/{source_id}", operation_id = "v1.source.patch", tag = "Source",
    params(("source_id" = String, Path, description = "The source's id")),
    request_body = SourcePatch,
    responses(
        (status = 200, body = SourceOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut), (status = 409, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_source(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(source_id): PathParams<String>,
    JsonBody(patch): JsonBody<SourcePatch>,
) -> Result<Json<SourceOut>, ApiError> {
    let tenant_id = principal.require_org()?;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let current = visible_source(&state, tenant_id, &source_id).await?;
        let draft = patched(&current, &patch);
        let checked = check(&state, tenant_id, draft).await?;
        let source = Source {
            app_id: checked.app.id,
            description: checked.description,
            kind: checked.kind,
            secret: checked.secret,
            tolerance_seconds: checked.tolerance_seconds,
            metadata: checked.metadata,
            updated_at: herald_store::now_after(current.updated_at),
            ..current.clone()
        };
        if state
            .store
            .update_source(tenant_id, &source, current.updated_at)
            .await?
        {
            state.sources.forget(&source.id);
            return Ok(Json(SourceOut::new(source, &state.config.public_url)));
        }
    }
    Err(ApiError::conflict(
        "the source is being changed by other requests; retry",
    ))
}

/// The settings `current` has with `patch` applied, to be checked again.
fn patched(current: &Source, patch: &SourcePatch) -> Draft {
    let provider = patch.provider.unwrap_or_else(|| current.kind.name());
    let same_provider = provider == current.kind.name();
    let out = SourceOut::new(current.clone(), "");
    let keep = |given: &Option<SourceLocator>, old: Option<SourceLocator>| {
        given.clone().or(if same_provider { old } else { None })
    };
    Draft {
        app_id: patch.app_id.clone().unwrap_or(out.app_id),
        provider,
        secret: Some(
            patch
                .secret
                .clone()
                .unwrap_or_else(|| current.secret.as_str().to_owned()),
        ),
        tolerance_seconds: Some(patch.tolerance_seconds.unwrap_or(current.tolerance_seconds)),
        description: patch.description.clone().unwrap_or(out.description),
        hmac: patch
            .hmac
            .clone()
            .or(if same_provider { out.hmac } else { None }),
        event_type: keep(&patch.event_type, out.event_type),
        event_id: match &patch.event_id {
            Some(given) => given.clone(),
            None if same_provider => out.event_id,
            None => None,
        },
        metadata: patch.metadata.clone().unwrap_or(out.metadata),
    }
}

/// Deletes a source (Herald extension); its ingest URL answers 404 from then on.
#[utoipa::path(
    delete, path = "/api/v1/source/{source_id}", operation_id = "v1.source.delete", tag = "Source",
    params(("source_id" = String, Path, description = "The source's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn delete_source(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(source_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = principal.require_org()?;
    let source = visible_source(&state, tenant_id, &source_id).await?;
    if !state.store.delete_source(tenant_id, &source.id).await? {
        return Err(ApiError::NotFound);
    }
    state.sources.forget(&source.id);
    Ok(StatusCode::NO_CONTENT)
}

/// Gets the secret a source verifies requests with (Herald extension).
#[utoipa::path(
    get, path = "/api/v1/source/{source_id}/secret", operation_id = "v1.source.get-secret", tag = "Source",
    params(("source_id" = String, Path, description = "The source's id")),
    responses(
        (status = 200, body = SourceSecretOut),
        (status = 401, body = HttpErrorOut), (status = 403, body = HttpErrorOut),
        (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_source_secret(
    State(state): State<AppState>,
    OrgPrincipal(principal): OrgPrincipal,
    PathParams(source_id): PathParams<String>,
) -> Result<Json<SourceSecretOut>, ApiError> {
    let tenant_id = principal.require_org()?;
    let source = visible_source(&state, tenant_id, &source_id).await?;
    Ok(Json(SourceSecretOut {
        key: source.secret.as_str().to_owned(),
    }))
}
