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
