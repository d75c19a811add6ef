//! schemathesis (from PyPI) against a started `headwater server start`: the
//! OpenAPI document says every status the server answers and every
//! constraint it enforces, so requests generated from the document get the
//! answers it promises.

use std::process::Command;

use super::prefect::{Server, KEY};

/// Every check schemathesis has, over every operation, with a fixed seed (a
/// failure reproduces). Its configuration (`tests/schemathesis.toml`) lists
/// the few rules no JSON Schema can state, and why.
#[test]
fn schemathesis_finds_the_server_as_its_document_says() {
    let Some(program) = super::test_tool("HEADWATER_TEST_SCHEMATHESIS") else { return };
    let server = Server::start();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(program)
        // It keeps a cache in its working folder.
        .current_dir(reports.path())
        .args(["--config-file", config, "run"])
        .arg(format!("{}/openapi.json", server.api))
        .args(["--url", &server.api])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .args(["--checks", "all", "--phases", "examples,fuzzing", "--max-examples", "10", "--seed", "1"])
        .args(["--generation-database", "none", "--no-color", "--workers", "4"])
        .arg("--report-dir")
        .arg(reports.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Tested: "), "it ran the operations:\n{text}");
}
