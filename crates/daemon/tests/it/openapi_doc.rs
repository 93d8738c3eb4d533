//! The OpenAPI document: the daemon serves at `/openapi.json` exactly what `docs/openapi.json` holds
//! (the unit tests in `http::openapi` keep both in step with the router), and the document passes a
//! real OpenAPI 3.1 validator (`openapi-spec-validator`, installed into the tools venv by
//! `scripts/test` beside uv).

use crate::common;

use std::path::{Path, PathBuf};

use common::{Backend, Daemon, DaemonOptions, TestDb};
use serde_json::Value;

fn docs_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_equals_the_docs_file() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");
    let daemon = Daemon::start(&db, DaemonOptions::default()).await;
    // No key needed: the document only describes the routes.
    let response = daemon.client.get(daemon.url("/openapi.json")).send().await.expect("openapi.json");
    assert_eq!(response.status().as_u16(), 200);
    let served: Value = response.json().await.expect("json");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(docs_file()).expect("docs/openapi.json")).expect("json");
    assert_eq!(served, stored, "docs/openapi.json differs from what the daemon serves");
    assert_eq!(served["openapi"], "3.1.0");
    assert!(served["paths"]["/plugin/{tenant_id}/management/logs"]["get"].is_object());
}

#[test]
fn document_passes_an_openapi_validator() {
    // The validator lives in the tools venv next to uv (scripts/test puts both there).
    let uv = PathBuf::from(std::env::var("UV_PATH").expect("UV_PATH (set by scripts/test)"));
    let validator = uv.with_file_name("openapi-spec-validator");
    assert!(validator.exists(), "{} is missing: run scripts/test (it installs openapi-spec-validator)", validator.display());
    let output = std::process::Command::new(&validator).arg(docs_file()).output().expect("run openapi-spec-validator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "validator refused docs/openapi.json:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");

    // The validator really validates: a broken copy is refused.
    let mut broken: Value = serde_json::from_str(&std::fs::read_to_string(docs_file()).unwrap()).unwrap();
    broken["paths"]["/health/check"]["get"]["responses"] = Value::String("not responses".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("broken.json");
    std::fs::write(&copy, broken.to_string()).unwrap();
    let output = std::process::Command::new(&validator).arg(&copy).output().expect("run validator");
    assert!(!output.status.success(), "a broken document must fail validation");
}
