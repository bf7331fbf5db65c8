//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes. `herald openapi` prints it and `openapi/openapi.json` commits it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, error, list, v1};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald API",
        description = "Multi-tenant webhook sending service. The `/api/v1` routes are wire-compatible with Svix's API.",
    ),
    paths(
        v1::health::health,
        v1::health::ping,
        v1::application::list_applications,
        v1::application::create_application,
        v1::application::get_application,
        v1::application::update_application,
        v1::application::patch_application,
        v1::application::delete_application,
        v1::endpoint::list_endpoints,
        v1::endpoint::create_endpoint,
        v1::endpoint::get_endpoint,
        v1::endpoint::update_endpoint,
        v1::endpoint::patch_endpoint,
        v1::endpoint::delete_endpoint,
        v1::endpoint::get_endpoint_secret,
        v1::endpoint::rotate_endpoint_secret,
        v1::endpoint::get_endpoint_headers,
        v1::endpoint::update_endpoint_headers,
        v1::endpoint::patch_endpoint_headers,
        v1::event_type::list_event_types,
        v1::event_type::create_event_type,
        v1::event_type::get_event_type,
        v1::event_type::update_event_type,
        v1::event_type::patch_event_type,
        v1::event_type::delete_event_type,
        v1::authentication::app_portal_access,
        v1::authentication::logout,
        v1::message::create_message,
        v1::message::list_messages,
        v1::message::get_message,
        v1::message::expunge_message_content,
        v1::attempt::list_attempts_by_endpoint,
        v1::attempt::list_attempts_by_msg,
        v1::attempt::list_attempted_messages,
        v1::attempt::list_attempted_destinations,
        v1::attempt::get_attempt,
        v1::attempt::expunge_attempt_content,
        v1::attempt::resend,
        v1::attempt::recover,
        v1::attempt::replay_missing,
        v1::attempt::send_example,
        v1::attempt::endpoint_stats,
        v1::dead_letter::list_dead_letters,
        v1::dead_letter::list_endpoint_dead_letters,
        v1::dead_letter::redrive_dead_letters,
        v1::dead_letter::redrive_endpoint_dead_letters,
        v1::stats::endpoint_report,
        v1::stats::app_report,
        v1::operational::list_operational_endpoints,
        v1::operational::create_operational_endpoint,
        v1::operational::get_operational_endpoint,
        v1::operational::update_operational_endpoint,
        v1::operational::patch_operational_endpoint,
        v1::operational::delete_operational_endpoint,
        v1::operational::get_operational_endpoint_secret,
        v1::operational::rotate_operational_endpoint_secret,
        admin::create_tenant,
        admin::list_tenants,
        admin::get_tenant,
        admin::list_api_keys,
        admin::create_api_key,
        admin::revoke_api_key,
    ),
    components(schemas(
        error::HttpErrorOut,
        error::HttpValidationError,
        error::ValidationErrorItem,
        list::Ordering,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "Application", description = "A tenant's customers; each has its own endpoints."),
        (name = "Endpoint", description = "URLs that receive an application's webhooks."),
        (name = "Event Type", description = "The catalogue of events a tenant sends."),
        (name = "Message", description = "Messages posted for an application and fanned out to its endpoints."),
        (name = "Message Attempt", description = "The log of delivery attempts; resending."),
        (name = "Dead Letter", description = "Deliveries that exhausted their retry schedule: listing and redrive."),
        (name = "Stats", description = "Herald's delivery stats: latency percentiles, success rates and failures by class for any window."),
        (name = "Operational Webhook Endpoint", description = "Where a tenant receives Herald's own events about its endpoints and deliveries."),
        (name = "Authentication", description = "Application-scoped tokens."),
        (name = "Health", description = "Liveness and readiness."),
        (name = "Admin", description = "Operator routes: tenants and API keys. Enabled by HERALD_ADMIN_TOKEN."),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("HTTPBearer", bearer());
        components.add_security_scheme("AdminToken", bearer());
    }
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
