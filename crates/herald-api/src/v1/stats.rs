//! Herald's own stats routes: for an endpoint or a whole application, over
//! any window, attempts, successes, success rate, failures by class, latency
//! percentiles and a time series — answered by merging the stats role's
//! per-hour buckets (hour and day reports, which count whole hours) or
//! per-minute buckets (minute reports; see `herald_stats::report`), so the
//! cost does not grow with the number of attempts.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_core::stats::OutcomeCounts;
use herald_core::{ErrorClass, ValidationError};
use herald_stats::{Granularity, LatencySummary, Report};

use crate::auth::Principal;
use crate::error::{ApiError, HttpErrorOut, HttpValidationError};
use crate::extract::{PathParams, QueryParams};
use crate::v1::endpoint::visible_endpoint;
use crate::v1::visible_app;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats/report",
            get(endpoint_report),
        )
        .route("/api/v1/app/{app_id}/stats/report", get(app_report))
}

/// The window when none is given.
const DEFAULT_WINDOW_HOURS: i64 = 24;
/// The longest window a report covers.
const MAX_WINDOW_DAYS: i64 = 90;
/// The most points a time series may have.
const MAX_POINTS: i64 = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Start of the window (default: 24 hours before `until`).
    pub since: Option<DateTime<Utc>>,
    /// End of the window, exclusive (default: now).
    pub until: Option<DateTime<Utc>>,
    /// Width of the time-series points: `minute`, `hour` (default) or `day`.
    pub granularity: Option<String>,
}

/// Latency percentiles in milliseconds (relative error ≤ 1%); null without attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyOut {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl From<LatencySummary> for LatencyOut {
    fn from(latency: LatencySummary) -> Self {
        Self {
            p50: latency.p50,
            p95: latency.p95,
            p99: latency.p99,
            max: latency.max,
        }
    }
}

/// Failed attempts by why they failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailuresOut {
    pub timeout: u64,
    pub connect: u64,
    pub dns: u64,
    pub tls: u64,
    /// Refused by the SSRF guard.
    pub blocked: u64,
    pub http3xx: u64,
    pub http4xx: u64,
    pub http5xx: u64,
    pub other: u64,
}

impl From<&OutcomeCounts> for FailuresOut {
    fn from(counts: &OutcomeCounts) -> Self {
        Self {
            timeout: counts.failures_of(ErrorClass::Timeout),
            connect: counts.failures_of(ErrorClass::Connect),
            dns: counts.failures_of(ErrorClass::Dns),
            tls: counts.failures_of(ErrorClass::Tls),
            blocked: counts.failures_of(ErrorClass::Blocked),
            http3xx: counts.failures_of(ErrorClass::Http3xx),
            http4xx: counts.failures_of(ErrorClass::Http4xx),
            http5xx: counts.failures_of(ErrorClass::Http5xx),
            other: counts.failures_of(ErrorClass::Other),
        }
    }
}

/// Attempts, outcomes and latency of a set of attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsOut {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    /// successes / attempts; null without attempts.
    pub success_rate: Option<f64>,
    pub failures_by_class: FailuresOut,
    pub latency_ms: LatencyOut,
}

impl StatsOut {
    fn new(counts: &OutcomeCounts, latency: LatencySummary) -> Self {
        Self {
            attempts: counts.attempts,
            successes: counts.successes,
            failures: counts.failures(),
            success_rate: counts.success_rate(),
            failures_by_class: counts.into(),
            latency_ms: latency.into(),
        }
    }
}

/// One point of the time series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsPointOut {
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub stats: StatsOut,
}

/// One endpoint's share of an application report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatsOut {
    pub endpoint_id: String,
    #[serde(flatten)]
    pub stats: StatsOut,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsReportOut {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `minute`, `hour` or `day`.
    pub granularity: String,
    #[serde(flatten)]
    pub total: StatsOut,
    /// Points with attempts, oldest first.
    pub series: Vec<StatsPointOut>,
    /// Per endpoint (application reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<EndpointStatsOut>>,
}

impl StatsReportOut {
    fn new(report: Report, granularity: &str, per_endpoint: bool) -> Self {
        Self {
            since: report.since,
            until: report.until,
            granularity: granularity.to_owned(),
            total: StatsOut::new(&report.counts, report.latency),
            series: report
                .series
                .iter()
                .map(|p| StatsPointOut {
                    start: p.start,
                    stats: StatsOut::new(&p.counts, p.latency),
                })
                .collect(),
            endpoints: per_endpoint.then(|| {
                report
                    .endpoints
                    .iter()
                    .map(|(id, counts, latency)| EndpointStatsOut {
                        endpoint_id: id.to_string(),
                        stats: StatsOut::new(counts, *latency),
                    })
                    .collect()
            }),
        }
    }
}

/// A validated window and granularity.
pub(crate) struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub granularity: Granularity,
    pub granularity_name: String,
}

impl ReportParams {
    pub(crate) fn window(self) -> Result<Window, ApiError> {
        let invalid = |field: &str, msg: String| -> ApiError {
            ValidationError::new(field, msg)
                .at(&["query", field])
                .into()
        };
        let until = self.until.unwrap_or_else(herald_store::now);
        let since = self
            .since
            .unwrap_or(until - chrono::Duration::hours(DEFAULT_WINDOW_HOURS));
        if until <= since {
            return Err(invalid("until", "must be after since".into()));
        }
        if until - since > chrono::Duration::days(MAX_WINDOW_DAYS) {
            return Err(invalid(
                "since",
                format!("the window may be at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        let granularity_name = self.granularity.unwrap_or_else(|| "hour".to_owned());
        let granularity = Granularity::parse(&granularity_name)
            .ok_or_else(|| invalid("granularity", "must be minute, hour or day".into()))?;
        let points = (until - since).num_seconds() / granularity.width().num_seconds();
        if points > MAX_POINTS {
            return Err(invalid(
                "granularity",
                format!("{points} points is more than {MAX_POINTS}; choose a coarser granularity or a shorter window"),
            ));
        }
        Ok(Window {
            since,
            until,
            granularity,
            granularity_name,
        })
    }
}

/// An endpoint's stats over a window, with a time series.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats/report",
    operation_id = "herald.stats.endpoint-report", tag = "Stats",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ("endpoint_id" = String, Path, description = "The endpoint's id or uid"),
        ReportParams,
    ),
    responses(
        (status = 200, body = StatsReportOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn endpoint_report(
    State(state): State<AppState>,
    principal: Principal,
    PathParams((app_id, endpoint_id)): PathParams<(String, String)>,
    QueryParams(params): QueryParams<ReportParams>,
) -> Result<Json<StatsReportOut>, ApiError> {
    let window = params.window()?;
    let (app, endpoint) = visible_endpoint(&state, &principal, &app_id, &endpoint_id).await?;
    report(&state, &principal, &app.id, Some(&endpoint.id), window).await
}

/// The report of one endpoint, or of a whole application (`endpoint_id` None,
/// then with its per-endpoint breakdown).
async fn report(
    state: &AppState,
    principal: &Principal,
    app_id: &herald_core::ApplicationId,
    endpoint_id: Option<&herald_core::EndpointId>,
    window: Window,
) -> Result<Json<StatsReportOut>, ApiError> {
    let report = herald_stats::report(
        state.store.as_ref(),
        principal.tenant_id(),
        app_id,
        endpoint_id,
        window.since,
        window.until,
        window.granularity,
    )
    .await?;
    Ok(Json(StatsReportOut::new(
        report,
        &window.granularity_name,
        endpoint_id.is_none(),
    )))
}

/// An application's stats over a window, across its endpoints, with a time
/// series and a per-endpoint breakdown.
#[utoipa::path(
    get, path = "/api/v1/app/{app_id}/stats/report",
    operation_id = "herald.stats.app-report", tag = "Stats",
    params(
        ("app_id" = String, Path, description = "The application's id or uid"),
        ReportParams,
    ),
    responses(
        (status = 200, body = StatsReportOut),
        (status = 401, body = HttpErrorOut), (status = 404, body = HttpErrorOut),
        (status = 422, body = HttpValidationError),
    ),
    security(("HTTPBearer" = []))
)]
pub async fn app_report(
    State(state): State<AppState>,
    principal: Principal,
    PathParams(app_id): PathParams<String>,
    QueryParams(params): QueryParams<ReportParams>,
) -> Result<Json<StatsReportOut>, ApiError> {
    let window = params.window()?;
    let app = visible_app(&state, &principal, &app_id).await?;
    report(&state, &principal, &app.id, None, window).await
}
