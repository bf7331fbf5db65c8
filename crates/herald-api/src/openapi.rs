//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes. `herald openapi` prints it and `openapi/openapi.json` commits it.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::{admin, error, ingest, list, v1};

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
        v1::source::list_sources,
        v1::source::create_source,
        v1::source::get_source,
        v1::source::patch_source,
        v1::source::delete_source,
        v1::source::get_source_secret,
        ingest::ingest,
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
    modifiers(&SecuritySchemes, &InputErrors),
    tags(
        (name = "Application", description = "A tenant's customers; each has its own endpoints."),
        (name = "Endpoint", description = "URLs that receive an application's webhooks."),
        (name = "Event Type", description = "The catalogue of events a tenant sends."),
        (name = "Message", description = "Messages posted for an application and fanned out to its endpoints."),
        (name = "Message Attempt", description = "The log of delivery attempts; resending."),
        (name = "Dead Letter", description = "Deliveries that exhausted their retry schedule: listing and redrive."),
        (name = "Stats", description = "Herald's delivery stats: latency percentiles, success rates and failures by class for any window."),
        (name = "Operational Webhook Endpoint", description = "Where a tenant receives Herald's own events about its endpoints and deliveries."),
        (name = "Source", description = "Herald extension: inbound webhooks. A source receives a provider's webhooks (Stripe, GitHub, Shopify, Slack, Standard Webhooks, a custom HMAC header) at `/ingest/{source_id}`, verifies their signatures and turns them into messages of an application."),
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

/// Documents the errors the request extractors give, on every operation whose
/// input passes through them (an operation's own annotation wins):
///
/// - credentials (`auth.rs`): 400 `duplicate_authorization` for more than
///   one `Authorization` header;
/// - a request body (`JsonBody` and its kin in `extract.rs`): 400 when it is
///   not JSON or cannot be read, 408 when it arrives too slowly, 413 past the
///   size limit, 415 when it is not `application/json`, 422 when it has the
///   wrong shape or a field is invalid;
/// - query parameters (`QueryParams`, then the handler's checks): 422;
/// - path parameters (`PathParams`): 422 when a segment does not decode, and
///   under `/api/v1` when it is not a well-formed id, uid or event type name
///   (`IdOrUid::parse` and the like; the admin routes answer 404 for any id
///   they do not know).
struct InputErrors;

impl Modify for InputErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                document_input_errors(operation);
            }
        }
    }
}

fn document_input_errors(operation: &mut Operation) {
    let has_param = |location: ParameterIn| {
        operation
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == location)
    };
    let has_body = operation.request_body.is_some();
    let mut bad_request = Vec::new();
    if has_body {
        bad_request
            .push("the body is not JSON (`invalid_json`) or could not be read (`invalid_body`)");
    }
    if operation.security.is_some() {
        bad_request.push("more than one `Authorization` header (`duplicate_authorization`)");
    }
    let mut errors: Vec<(&str, Response)> = Vec::new();
    if !bad_request.is_empty() {
        errors.push((
            "400",
            error_response(&upper_first(&bad_request.join("; or "))),
        ));
    }
    if has_body {
        errors.extend([
            (
                "408",
                error_response("The body did not arrive within the time allowed"),
            ),
            (
                "413",
                error_response("The body exceeds the configured size limit"),
            ),
            ("415", error_response("The body is not `application/json`")),
            ("422", validation_response()),
        ]);
    }
    if has_param(ParameterIn::Query) || has_param(ParameterIn::Path) {
        errors.push(("422", validation_response()));
    }
    let responses = &mut operation.responses.responses;
    for (status, response) in errors {
        responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    }
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn error_response(description: &str) -> Response {
    json_response(description, "HttpErrorOut")
}

fn validation_response() -> Response {
    json_response(
        "A parameter or a field of the body is invalid; `loc` says which",
        "HttpValidationError",
    )
}

fn json_response(description: &str, schema: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
