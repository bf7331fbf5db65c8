//! The committed `openapi/openapi.json` must be exactly what the code generates.
//! Regenerate with `cargo run -p herald -- openapi > openapi/openapi.json`.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_openapi_document_matches_the_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("openapi")
        .output()
        .expect("run herald openapi");
    assert!(output.status.success(), "herald openapi failed: {output:?}");
    let generated = String::from_utf8(output.stdout).expect("utf-8 document");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        generated == committed,
        "openapi/openapi.json is stale: run `cargo run -p herald -- openapi > openapi/openapi.json` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
    assert!(doc["paths"]["/api/v1/app"]["post"]["operationId"] == "v1.application.create");
}

#[test]
fn input_errors_are_documented_where_the_extractors_give_them() {
    let doc: serde_json::Value =
        serde_json::from_str(&herald_api::openapi::openapi_json()).expect("valid JSON");
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has responses"));
        responses.keys().cloned().collect()
    };
    // A JSON body: not JSON, too slow, too large, not declared JSON, invalid.
    let create_app = statuses("/api/v1/app", "post");
    for status in ["400", "408", "413", "415", "422"] {
        assert!(
            create_app.contains(&status.to_owned()),
            "{status}: {create_app:?}"
        );
    }
    // A malformed id in a /api/v1 path is a 422; no body, so no 415.
    let get_endpoint = statuses("/api/v1/app/{app_id}/endpoint/{endpoint_id}", "get");
    assert!(get_endpoint.contains(&"422".to_owned()), "{get_endpoint:?}");
    assert!(
        !get_endpoint.contains(&"415".to_owned()),
        "{get_endpoint:?}"
    );
    // Two Authorization headers are a 400 wherever credentials are read.
    assert!(get_endpoint.contains(&"400".to_owned()), "{get_endpoint:?}");
    // A path segment that does not decode is a 422 on the admin routes too.
    let get_tenant = statuses("/admin/v1/tenants/{tenant_id}", "get");
    assert!(get_tenant.contains(&"422".to_owned()), "{get_tenant:?}");
    // Parameterless and bodyless: nothing to refuse.
    assert_eq!(statuses("/api/v1/health/ping", "get"), ["204"]);
}
