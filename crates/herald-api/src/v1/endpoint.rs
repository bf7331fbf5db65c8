//! Endpoints: the URLs of an application that receive its webhooks, with their
//! filters, signing secrets and custom headers.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use herald_core::policy::RetryPolicySpec;
use herald_core::{
    ApplicationId, ChannelName, EndpointHeaders, EndpointId, EndpointSecret, EndpointUrl,
    EventTypeFilter, EventTypeName, IdOrUid, TenantId, Uid, ValidationError,
};
use herald_signature::SignatureScheme;
use herald_store::{Application, Endpoint, EndpointHealth, EndpointSecrets};

use crate::auth::Principal;
use crate::capability::AppPortalCapability;
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::list::{ListParams, ListResponse};
use crate::v1::operational::{emit_endpoint_events, update_events};
use crate::v1::signing::{
    apply_scheme, check_header_collisions, check_key_kind, to_wire, SchemeChange, SignatureOptions,
    SignatureSchemeName,
};
use crate::v1::{check_name_list, nullable, parse_retry_policy, visible_app};
use crate::AppState;
use herald_core::operational::OperationalEventType;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app/{app_id}/endpoint",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
            get(get_endpoint)
                .put(update_endpoint)
                .patch(patch_endpoint)
                .delete(delete_endpoint),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
            get(get_endpoint_secret),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
            post(rotate_endpoint_secret),
        )
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
            get(get_endpoint_headers)
                .put(update_endpoint_headers)
                .patch(patch_endpoint_headers),
        )
}

/// Most channels one endpoint may listen to, as in Svix.
const MAX_CHANNELS: usize = 10;
/// How often a write is retried after losing a race with another write.
pub(crate) const MAX_WRITE_ATTEMPTS: usize = 10;
/// Longest grace period of a rotated secret: 7 days.
const MAX_GRACE_SECONDS: u32 = 7 * 24 * 60 * 60;
const DEFAULT_GRACE_SECONDS: u32 = 24 * 60 * 60;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    #[schema(example = "https://example.com/webhook/", max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Optional unique identifier for the endpoint.
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Event types this endpoint receives (omit for all). `filterTypes` is
    /// accepted too. Each entry is an event-type name, which must exist, or a
    /// Herald pattern, which need not match an existing type: `order.*`
    /// receives every type with one or more segments after `order.`
    /// (`order.created`, `order.payment.failed`, not `order`), and `*` every type.
    #[serde(alias = "filterTypes")]
    #[schema(example = json!(["invoice.paid", "order.*"]))]
    pub event_types: Option<Vec<String>>,
    /// Channels this endpoint listens to (omit for all).
    pub channels: Option<Vec<String>>,
    /// `whsec_` + base64 of 24–64 bytes, or for the `ed25519` scheme an Ed25519
    /// key `whsk_` + base64 (32-byte seed, or seed and public key); generated
    /// when omitted.
    pub secret: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Maximum messages per second to this endpoint. `rateLimit` is accepted too.
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<u16>,
    /// Custom headers sent with every delivery.
    pub headers: Option<BTreeMap<String, String>>,
    /// Legacy Svix field; only version 1 exists.
    pub version: Option<u16>,
    /// How deliveries are signed; `standard` when omitted.
    pub signature_scheme: Option<SignatureSchemeName>,
    /// The settings of the `hmac` scheme; only that scheme takes them.
    pub signature_options: Option<SignatureOptions>,
    /// How deliveries to this endpoint are retried; each unset setting
    /// follows the application's policy, then the server's default.
    pub retry_policy: Option<RetryPolicySpec>,
}

/// The body of `PUT`: like [`EndpointIn`] but the secret is managed separately.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointUpdate {
    #[schema(max_length = 2048)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Event-type names and patterns (`order.*`, `*`), as in `EndpointIn`.
    #[serde(alias = "filterTypes")]
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(alias = "rateLimit")]
    pub throttle_rate: Option<u16>,
    pub version: Option<u16>,
    /// How deliveries are signed; omitted keeps the current scheme (so clients
    /// that do not know the field never change it).
    pub signature_scheme: Option<SignatureSchemeName>,
    /// The settings of the `hmac` scheme; omitted keeps the current ones.
    pub signature_options: Option<SignatureOptions>,
    /// The endpoint's retry policy; omitted keeps the current one, null
    /// removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RetryPolicySpec>, nullable)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPatch {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub uid: Option<Option<String>>,
    pub disabled: Option<bool>,
    /// Event-type names and patterns (`order.*`, `*`), as in `EndpointIn`;
    /// null receives every type.
    #[serde(default, deserialize_with = "nullable", alias = "filterTypes")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub channels: Option<Option<Vec<String>>>,
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable", alias = "rateLimit")]
    #[schema(value_type = Option<u16>, nullable)]
    pub throttle_rate: Option<Option<u16>>,
    pub version: Option<u16>,
    /// A new signature scheme. Changing to or from `ed25519` makes a new key of
    /// the other kind; the old key keeps signing for 24 hours.
    pub signature_scheme: Option<SignatureSchemeName>,
    /// New settings for the `hmac` scheme.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<SignatureOptions>, nullable)]
    pub signature_options: Option<Option<SignatureOptions>>,
    /// A new retry policy; null removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RetryPolicySpec>, nullable)]
    pub retry_policy: Option<Option<RetryPolicySpec>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    #[schema(example = "ep_1srOrx2ZWZBpBUvZwXKQmoEYga2")]
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub version: u16,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    /// The same as `eventTypes`, under the name older SDKs read.
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub metadata: BTreeMap<String, String>,
    pub throttle_rate: Option<u16>,
    /// The same as `throttleRate`, under the name older SDKs read.
    pub rate_limit: Option<u16>,
    pub signature_scheme: SignatureSchemeName,
    /// The `hmac` scheme's settings; null for every other scheme.
    pub signature_options: Option<SignatureOptions>,
    /// The endpoint's own retry settings; null when it sets none.
    pub retry_policy: Option<RetryPolicySpec>,
    /// When the endpoint was last disabled, and why (`manual`, a 410 Gone,
    /// or failing for too long); null while it never was or since re-enabled.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub health: EndpointHealthOut,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How deliveries to the endpoint have been going, as the workers see them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealthOut {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The first failure since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    pub breaker: BreakerState,
    /// While the breaker is open: when the probe attempt is due.
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// The endpoint's circuit breaker: `closed` (delivering), `open` (deliveries
/// wait, no attempts, until `nextProbeAt`) or `halfOpen` (one probe attempt
/// decides; its success closes the breaker, its failure opens it for longer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl From<&EndpointHealth> for EndpointHealthOut {
    fn from(health: &EndpointHealth) -> Self {
        let (breaker, next_probe_at) = match health.breaker_open_until {
            None => (BreakerState::Closed, None),
            Some(until) if until > Utc::now() => (BreakerState::Open, Some(until)),
            Some(_) => (BreakerState::HalfOpen, None),
        };
        Self {
            consecutive_failures: health.consecutive_failures,
            failing_since: health.failing_since,
            breaker,
            next_probe_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointSecretOut {
    /// The current signing secret, `whsec_…`; for an `ed25519` endpoint, the
    /// public key receivers verify with, `whpk_…` (the secret key never leaves Herald).
    #[schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
    pub key: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSecretRotateIn {
    /// The new secret; generated when omitted or null.
    pub key: Option<String>,
    /// How long the previous secret stays valid (0 to 604800 s, default 86400).
    pub grace_period_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EndpointHeadersIn {
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHeadersPatchIn {
    /// Headers to set; a null value removes the header.
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Headers to remove (the form current Svix SDKs send).
    #[serde(default)]
    pub delete_headers: Vec<String>,
}

/// Sensitive headers are withheld from `headers` and named in `sensitive`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointHeadersOut {
    pub headers: BTreeMap<String, String>,
    pub sensitive: Vec<String>,
}

impl From<Endpoint> for EndpointOut {
    fn from(ep: Endpoint) -> Self {
        let (signature_scheme, signature_options) = to_wire(&ep.signature_scheme);
        let event_types: Option<Vec<String>> = ep
            .event_types
            .map(|types| types.into_iter().map(EventTypeFilter::into_inner).collect());
        Self {
            id: ep.id.to_string(),
            uid: ep.uid.map(Uid::into_inner),
            url: ep.url.as_str().to_owned(),
            description: ep.description,
            version: ep.version,
            disabled: ep.disabled,
            filter_types: event_types.clone(),
            event_types,
            channels: ep
                .channels
                .map(|channels| channels.into_iter().map(ChannelName::into_inner).collect()),
            metadata: ep.metadata,
            throttle_rate: ep.throttle_rate,
            rate_limit: ep.throttle_rate,
            signature_scheme,
            signature_options,
            retry_policy: ep.retry_policy,
            health: EndpointHealthOut::from(&ep.health),
            disabled_at: ep.health.disabled_at,
            disabled_reason: ep.health.disabled_reason,
            created_at: ep.created_at,
            updated_at: ep.updated_at,
        }
    }
}

/// The validated, mutable fields shared by create, replace and patch.
#[derive(Clone)]
struct EndpointFields {
    url: EndpointUrl,
    description: String,
    uid: Option<Uid>,
    version: u16,
    disabled: bool,
    event_types: Option<Vec<EventTypeFilter>>,
    channels: Option<Vec<ChannelName>>,
    metadata: herald_core::Metadata,
    throttle_rate: Option<u16>,
    scheme: SchemeChange,
    /// `None` keeps the endpoint's policy.
    retry_policy: Option<Option<RetryPolicySpec>>,
}

/// `eventTypes`/`filterTypes`: event-type names and patterns (`order.*`, `*`).
fn parse_event_types(types: Option<Vec<String>>) -> Result<Option<Vec<EventTypeFilter>>, ApiError> {
    let Some(types) = types else { return Ok(None) };
    check_name_list("eventTypes", &types, None)?;
    types
        .into_iter()
        .map(|t| EventTypeFilter::parse(t).map_err(|e| e.at(&["body", "eventTypes"]).into()))
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Some)
}

fn parse_channels(channels: Option<Vec<String>>) -> Result<Option<Vec<ChannelName>>, ApiError> {
    crate::v1::parse_channel_list(channels, MAX_CHANNELS)
}

fn parse_version(version: Option<u16>) -> Result<u16, ApiError> {
    match version {
        None | Some(1) => Ok(1),
        Some(_) => Err(ValidationError::new("version", "only version 1 exists").into()),
    }
}

fn parse_throttle(rate: Option<u16>) -> Result<Option<u16>, ApiError> {
    match rate {
        Some(0) => Err(ValidationError::new("throttleRate", "must be at least 1").into()),
        other => Ok(other),
    }
}

pub(crate) fn parse_description(description: String) -> Result<String, ApiError> {
    if description.len() > 1024 {
        return Err(
            ValidationError::new("description", "must be at most 1024 characters long").into(),
        );
    }
    Ok(description)
}

impl EndpointFields {
    fn from_update(input: EndpointUpdate, uid_fallback: Option<Uid>) -> Result<Self, ApiError> {
        Ok(Self {
            url: EndpointUrl::parse(input.url)?,
            description: parse_description(input.description)?,
            uid: match input.uid {
                Some(uid) => Some(Uid::parse(uid)?),
                None => uid_fallback,
            },
            version: parse_version(input.version)?,
            disabled: input.disabled,
            event_types: parse_event_types(input.event_types)?,
            channels: parse_channels(input.channels)?,
            metadata: input.metadata.unwrap_or_default(),
            throttle_rate: parse_throttle(input.throttle_rate)?,
            scheme: SchemeChange {
                name: input.signature_scheme,
                options: input.signature_options.map(Some),
            },
            retry_policy: input.retry_policy.map(parse_retry_policy).transpose()?,
        })
    }

    /// Replaces the endpoint's fields, checking the signature scheme against
    /// what the endpoint holds now.
    fn apply_to(self, endpoint: &mut Endpoint, principal: &Principal) -> Result<(), ApiError> {
        change_scheme(endpoint, &self.scheme, principal)?;
        endpoint.url = self.url;
        endpoint.description = self.description;
        endpoint.uid = self.uid;
        endpoint.version = self.version;
        endpoint.disabled = self.disabled;
        endpoint.event_types = self.event_types;
        endpoint.channels = self.channels;
        endpoint.metadata = self.metadata;
        endpoint.throttle_rate = self.throttle_rate;
        if let Some(policy) = self.retry_policy {
            endpoint.retry_policy = policy;
        }
        Ok(())
    }

    /// A new endpoint. Its key is `secret` when given (it must fit the scheme)
    /// and otherwise a fresh one of the kind the scheme signs with.
    fn into_endpoint(
        self,
        app_id: ApplicationId,
        secret: Option<EndpointSecret>,
        headers: EndpointHeaders,
    ) -> Result<Endpoint, ApiError> {
        let scheme = self.scheme.resolve(&SignatureScheme::Standard)?;
        let secret = match secret {
            Some(secret) => {
                check_key_kind(&scheme, &secret, &["body", "secret"])?;
                secret
            }
            None => EndpointSecret::generate_for(scheme.is_asymmetric()),
        };
        check_header_collisions(&scheme, &headers, "headers")?;
        let now = herald_store::now();
        Ok(Endpoint {
            id: EndpointId::new(),
            app_id,
            uid: self.uid,
            url: self.url,
            description: self.description,
            version: self.version,
            disabled: self.disabled,
            event_types: self.event_types,
            channels: self.channels,
            metadata: self.metadata,
            throttle_rate: self.throttle_rate,
            headers,
            secrets: EndpointSecrets::new(secret),
            signature_scheme: scheme,
            retry_policy: self.retry_policy.flatten(),
            app_retry_policy: None,
            health: EndpointHealth {
                disabled_at: self.disabled.then_some(now),
                disabled_reason: self.disabled.then(|| "manual".to_owned()),
                ..EndpointHealth::default()
            },
            created_at: now,
            updated_at: now,
        })
    }
}

/// Applies a requested change of signature scheme to a stored endpoint: the
/// result must not collide with its custom headers, and a change of key kind
/// makes a new key ([`apply_scheme`]).
///
/// A new key is a new secret: a portal token without `ManageEndpointSecret`
/// may not make one this way either.
fn change_scheme(
    endpoint: &mut Endpoint,
    change: &SchemeChange,
    principal: &Principal,
) -> Result<(), ApiError> {
    let scheme = change.resolve(&endpoint.signature_scheme)?;
    if scheme.is_asymmetric() != endpoint.secrets.current.is_asymmetric() {
        principal.require(AppPortalCapability::ManageEndpointSecret)?;
    }
    let field = if change.name.is_some() {
        "signatureScheme"
    } else {
        "signatureOptions"
    };
    check_header_collisions(&scheme, &endpoint.headers, field)?;
    apply_scheme(endpoint, scheme, default_grace());
    Ok(())
}

/// How long a replaced key keeps signing when nothing else is asked.
fn default_grace() -> chrono::Duration {
    chrono::Duration::seconds(i64::from(DEFAULT_GRACE_SECONDS))
}

/// Refuses event types the tenant has not defined (or has archived). A
/// pattern (`order.*`, `*`) is not checked: it stands for types that may not
/// exist yet, such as those a source will receive.
async fn check_event_types_exist(
    state: &AppState,
    tenant_id: &TenantId,
    types: &Option<Vec<EventTypeFilter>>,
) -> Result<(), ApiError> {
    let Some(types) = types else { return Ok(()) };
    let names: Vec<EventTypeName> = types.iter().filter_map(|t| t.exact().cloned()).collect();
    if names.is_empty() {
        return Ok(());
    }
    let missing = state.store.missing_event_types(tenant_id, &names).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(EventTypeName::as_str).collect();
    Err(ValidationError::new(
        "eventTypes",
        format!("unknown event types: {}", names.join(", ")),
    )
    .into())
}

fn map_uid_conflict(error: herald_store::StoreError) -> ApiError {
    if error.is_conflict_on("endpoint_app_id_uid_key") {
        ApiError::conflict("an endpoint with this uid already exists in this application")
    } else {
        error.into()
    }
}

pub(crate) async fn visible_endpoint(
    state: &AppState,
    principal: &Principal,
    app_param: &str,
    endpoint_param: &str,
) -> Result<(Application, Endpoint), ApiError> {
    let app = visible_app(state, principal, app_param).await?;
    let endpoint_ref = IdOrUid::parse("endpoint_id", endpoint_param)?;
    let endpoint = state
        .store
        .endpoint(principal.tenant_id(), &app.id, &endpoint_ref)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((app, endpoint))
}

/// Applies `change` to the stored endpoint and writes it back, starting again
/// from a fresh read when another request changed the endpoint in between, so
/// concurrent writes (a rotation and a patch, say) never overwrite each other.
async fn modify_endpoint(
    state: &AppState,
    principal: &Principal,
    app_param: &str,
    endpoint_param: &str,
    change: impl FnMut(&mut Endpoint) -> Result<(), ApiError>,
) -> Result<Endpoint, ApiError> {
    let load = || async {
        visible_endpoint(state, principal, app_param, endpoint_param)
            .await
            .map(|(_, endpoint)| endpoint)
    };
    rewrite_endpoint(state, principal.tenant_id(), load, change, map_uid_conflict).await
}

/// The read-modify-write of every endpoint change, the operational
/// endpoints' too: `change` is applied to what `load` reads, written back
/// only if nobody wrote in between (else read again), with a disable's when
/// and why (an enable clears them, and the store the endpoint's health).
/// `uid_conflict` words a taken uid.
pub(crate) async fn rewrite_endpoint<Fut>(
    state: &AppState,
    tenant_id: &TenantId,
    mut load: impl FnMut() -> Fut,
    mut change: impl FnMut(&mut Endpoint) -> Result<(), ApiError>,
    uid_conflict: fn(herald_store::StoreError) -> ApiError,
) -> Result<Endpoint, ApiError>
where
    Fut: std::future::Future<Output = Result<Endpoint, ApiError>>,
{
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let mut endpoint = load().await?;
        let expected = endpoint.updated_at;
        let was_disabled = endpoint.disabled;
        change(&mut endpoint)?;
        endpoint.updated_at = herald_store::now_after(expected);
        match (was_disabled, endpoint.disabled) {
            (false, true) => {
                endpoint.health.disabled_at = Some(endpoint.updated_at);
                endpoint.health.disabled_reason = Some("manual".to_owned());
            }
            (true, false) => endpoint.health = EndpointHealth::default(),
            _ => {}
        }
        let written = state
            .store
            .update_endpoint(tenant_id, &endpoint, expected)
            .await
            .map_err(uid_conflict)?;
        if written {
            return Ok(endpoint);
        }
    }
    Err(ApiError::conflict(
        "the endpoint is being changed by other requests; retry",
    ))
}

/// Lists an application's endpoints.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint", operation_id = "v1.endpoint.list", tag = "Endpoint",
    params(("app_id" = String, Path, description = "The application's id or uid"), ListParams),
    responses(
        (status = 200, body = ListResponse<EndpointOut>),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<ListResponse<EndpointOut>>, ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let query = params.to_query_newest_first(|k| EndpointId::parse(k).is_ok())?;
    let page = state
        .store
        .list_endpoints(principal.tenant_id(), &app.id, &query)
        .await?;
    Ok(Json(ListResponse::from_page(
        page,
        &query,
        |e| e.id.to_string(),
        EndpointOut::from,
    )))
}

/// Creates an endpoint.
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint", operation_id = "v1.endpoint.create", tag = "Endpoint",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = EndpointIn,
    responses(
        (status = 201, body = EndpointOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    JsonBody(input): JsonBody<EndpointIn>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    check_room_for_endpoint(&state, principal.tenant_id(), &app.id).await?;
    let secret = input
        .secret
        .as_deref()
        .map(EndpointSecret::parse)
        .transpose()?;
    let headers = EndpointHeaders::parse(input.headers.clone().unwrap_or_default())?;
    let fields = EndpointFields::from_update(
        EndpointUpdate {
            url: input.url,
            description: input.description,
            uid: input.uid,
            disabled: input.disabled,
            event_types: input.event_types,
            channels: input.channels,
            metadata: input.metadata,
            throttle_rate: input.throttle_rate,
            version: input.version,
            signature_scheme: input.signature_scheme,
            signature_options: input.signature_options,
            retry_policy: input.retry_policy.map(Some),
        },
        None,
    )?;
    check_event_types_exist(&state, principal.tenant_id(), &fields.event_types).await?;
    let endpoint = fields.into_endpoint(app.id, secret, headers)?;
    state
        .store
        .insert_endpoint(principal.tenant_id(), &endpoint)
        .await
        .map_err(map_uid_conflict)?;
    let created = [OperationalEventType::EndpointCreated];
    emit_endpoint_events(&state, principal.tenant_id(), &endpoint, &created).await;
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// Gets an endpoint by id or uid.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.get", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    responses(
        (status = 200, body = EndpointOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    let (_, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    Ok(Json(endpoint.into()))
}

/// Replaces an endpoint, creating it (201) when the uid is new.
#[utoipa::path(
    put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.update", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EndpointUpdate,
    responses(
        (status = 200, body = EndpointOut), (status = 201, body = EndpointOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn update_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<EndpointUpdate>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let app = visible_app(&state, &principal, &app_id).await?;
    let tenant_id = principal.tenant_id();
    let endpoint_ref = IdOrUid::parse("endpoint_id", &endpoint_id)?;
    let existing = state
        .store
        .endpoint(tenant_id, &app.id, &endpoint_ref)
        .await?;
    match existing {
        Some(existing) => {
            // A PUT by uid keeps that uid when the body does not name one.
            let path_uid = existing
                .uid
                .clone()
                .filter(|uid| uid.as_str() == endpoint_id);
            let fields = EndpointFields::from_update(input, path_uid)?;
            check_event_types_exist(&state, tenant_id, &fields.event_types).await?;
            let mut was_disabled = false;
            let endpoint =
                modify_endpoint(&state, &principal, &app_id, existing.id.as_str(), |ep| {
                    was_disabled = ep.disabled;
                    fields.clone().apply_to(ep, &principal)
                })
                .await?;
            let events = update_events(was_disabled, endpoint.disabled);
            emit_endpoint_events(&state, tenant_id, &endpoint, &events).await;
            Ok((StatusCode::OK, Json(endpoint.into())))
        }
        None if EndpointId::looks_like(&endpoint_id) => Err(ApiError::NotFound),
        None => {
            let path_uid = Uid::parse(endpoint_id).map_err(|e| e.at(&["path", "endpoint_id"]))?;
            let fields = EndpointFields::from_update(input, Some(path_uid))?;
            check_event_types_exist(&state, tenant_id, &fields.event_types).await?;
            check_room_for_endpoint(&state, tenant_id, &app.id).await?;
            let endpoint = fields.into_endpoint(app.id, None, EndpointHeaders::default())?;
            state
                .store
                .insert_endpoint(tenant_id, &endpoint)
                .await
                .map_err(map_uid_conflict)?;
            let created = [OperationalEventType::EndpointCreated];
            emit_endpoint_events(&state, tenant_id, &endpoint, &created).await;
            Ok((StatusCode::CREATED, Json(endpoint.into())))
        }
    }
}

/// Refuses a new endpoint on an application that has the most allowed
/// (`HERALD_MAX_ENDPOINTS_PER_APP`); checked before the insert, so two
/// creations at the same instant can both pass it.
pub(crate) async fn check_room_for_endpoint(
    state: &AppState,
    tenant_id: &TenantId,
    app_id: &ApplicationId,
) -> Result<(), ApiError> {
    let most = state.config.limits.max_endpoints_per_app;
    if state.store.endpoint_count(tenant_id, app_id).await? < u64::from(most) {
        return Ok(());
    }
    Err(ValidationError::new(
        "url",
        format!("this application already has {most} endpoints, the most one may have"),
    )
    .at(&["body"])
    .into())
}

/// Changes the given fields of an endpoint; null clears a nullable field.
#[utoipa::path(
    patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.patch", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EndpointPatch,
    responses(
        (status = 200, body = EndpointOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 409, body = HttpErrorOut), (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(patch): JsonBody<EndpointPatch>,
) -> Result<Json<EndpointOut>, ApiError> {
    // Validate everything first; only the write itself is retried.
    let url = patch.url.map(EndpointUrl::parse).transpose()?;
    let description = patch.description.map(parse_description).transpose()?;
    let uid = patch
        .uid
        .map(|uid| uid.map(Uid::parse).transpose())
        .transpose()?;
    let event_types = patch.event_types.map(parse_event_types).transpose()?;
    if let Some(types) = &event_types {
        check_event_types_exist(&state, principal.tenant_id(), types).await?;
    }
    let channels = patch.channels.map(parse_channels).transpose()?;
    let throttle_rate = patch.throttle_rate.map(parse_throttle).transpose()?;
    let version = patch.version.map(|v| parse_version(Some(v))).transpose()?;
    let retry_policy = patch
        .retry_policy
        .clone()
        .map(parse_retry_policy)
        .transpose()?;
    let scheme = SchemeChange {
        name: patch.signature_scheme,
        options: patch.signature_options.clone(),
    };
    let mut was_disabled = false;
    let endpoint = modify_endpoint(&state, &principal, &app_id, &endpoint_id, |endpoint| {
        was_disabled = endpoint.disabled;
        change_scheme(endpoint, &scheme, &principal)?;
        if let Some(url) = &url {
            endpoint.url = url.clone();
        }
        if let Some(description) = &description {
            endpoint.description = description.clone();
        }
        if let Some(uid) = &uid {
            endpoint.uid = uid.clone();
        }
        if let Some(disabled) = patch.disabled {
            endpoint.disabled = disabled;
        }
        if let Some(types) = &event_types {
            endpoint.event_types = types.clone();
        }
        if let Some(channels) = &channels {
            endpoint.channels = channels.clone();
        }
        if let Some(metadata) = &patch.metadata {
            endpoint.metadata = metadata.clone();
        }
        if let Some(rate) = throttle_rate {
            endpoint.throttle_rate = rate;
        }
        if let Some(version) = version {
            endpoint.version = version;
        }
        if let Some(policy) = &retry_policy {
            endpoint.retry_policy = policy.clone();
        }
        Ok(())
    })
    .await?;
    let events = update_events(was_disabled, endpoint.disabled);
    emit_endpoint_events(&state, principal.tenant_id(), &endpoint, &events).await;
    Ok(Json(endpoint.into()))
}

/// Deletes an endpoint.
#[utoipa::path(
    delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", operation_id = "v1.endpoint.delete", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    if !state
        .store
        .delete_endpoint(principal.tenant_id(), &app.id, &endpoint.id)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    let deleted = [OperationalEventType::EndpointDeleted];
    emit_endpoint_events(&state, principal.tenant_id(), &endpoint, &deleted).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Gets the endpoint's current signing secret.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret", operation_id = "v1.endpoint.get-secret", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    responses(
        (status = 200, body = EndpointSecretOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_endpoint_secret(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
) -> Result<Json<EndpointSecretOut>, ApiError> {
    let (_, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    Ok(Json(EndpointSecretOut {
        key: endpoint.secrets.current.shown(),
    }))
}

/// Rotates the signing secret; the previous one stays valid for the grace period.
///
/// Returns the new secret (the Svix SDKs parse a body here, although the
/// open-source Svix server answers 204).
#[utoipa::path(
    post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate", operation_id = "v1.endpoint.rotate-secret", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EndpointSecretRotateIn,
    responses(
        (status = 200, body = EndpointSecretOut),
        (status = 204, description = "Rotated; a portal token without `ViewEndpointSecret` is not shown the new key"),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn rotate_endpoint_secret(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<EndpointSecretRotateIn>,
) -> Result<Response, ApiError> {
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(ValidationError::new(
            "gracePeriodSeconds",
            format!("must be between 0 and {MAX_GRACE_SECONDS}"),
        )
        .into());
    }
    let given = input
        .key
        .as_deref()
        .map(|key| EndpointSecret::parse(key).map_err(|e| e.at(&["body", "key"])))
        .transpose()?;
    let grace = chrono::Duration::seconds(i64::from(grace));
    let endpoint = modify_endpoint(&state, &principal, &app_id, &endpoint_id, |endpoint| {
        let scheme = &endpoint.signature_scheme;
        let next = match &given {
            Some(key) => {
                check_key_kind(scheme, key, &["body", "key"])?;
                key.clone()
            }
            None => EndpointSecret::generate_for(scheme.is_asymmetric()),
        };
        endpoint.secrets.rotate(next, grace, herald_store::now());
        Ok(())
    })
    .await?;
    if principal
        .require(AppPortalCapability::ViewEndpointSecret)
        .is_err()
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(EndpointSecretOut {
        key: endpoint.secrets.current.shown(),
    })
    .into_response())
}

/// Gets the endpoint's custom headers, with sensitive values withheld.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.get-headers", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    responses(
        (status = 200, body = EndpointHeadersOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn get_endpoint_headers(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
) -> Result<Json<EndpointHeadersOut>, ApiError> {
    let (_, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    let (headers, sensitive) = endpoint.headers.redacted();
    Ok(Json(EndpointHeadersOut { headers, sensitive }))
}

/// Replaces the endpoint's custom headers.
#[utoipa::path(
    put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.update-headers", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EndpointHeadersIn,
    responses(
        (status = 204, description = "Headers replaced"),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn update_endpoint_headers(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<EndpointHeadersIn>,
) -> Result<StatusCode, ApiError> {
    let headers = EndpointHeaders::parse(input.headers)?;
    modify_endpoint(&state, &principal, &app_id, &endpoint_id, |endpoint| {
        check_header_collisions(&endpoint.signature_scheme, &headers, "headers")?;
        endpoint.headers = headers.clone();
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets or (with null) removes individual custom headers.
#[utoipa::path(
    patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", operation_id = "v1.endpoint.patch-headers", tag = "Endpoint",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
    ),
    request_body = EndpointHeadersPatchIn,
    responses(
        (status = 204, description = "Headers changed"),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn patch_endpoint_headers(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    JsonBody(input): JsonBody<EndpointHeadersPatchIn>,
) -> Result<StatusCode, ApiError> {
    let mut changes = input.headers;
    changes.extend(input.delete_headers.into_iter().map(|name| (name, None)));
    modify_endpoint(&state, &principal, &app_id, &endpoint_id, |endpoint| {
        let headers = endpoint.headers.patched(changes.clone())?;
        check_header_collisions(&endpoint.signature_scheme, &headers, "headers")?;
        endpoint.headers = headers;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
