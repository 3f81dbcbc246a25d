//! The Postman collection, run by newman against the local stack: every route, signed with
//! AWS Signature the way Postman signs, and every request's own tests must pass.

use crate::common::*;
use std::path::Path;
use std::process::Command;

/// Installs the pinned newman from `postman/package-lock.json` once; `npm ci` is skipped when
/// it is already there.
fn newman(postman: &Path) -> std::path::PathBuf {
    let bin = postman.join("node_modules/.bin/newman");
    if !bin.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(postman)
            .status()
            .expect("npm runs (Node.js is needed for the Postman collection)");
        assert!(status.success(), "npm ci in postman/ failed");
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postman_collection_passes_against_the_local_stack() {
    let postman = repo().join("postman");
    let newman = newman(&postman);
    let stack = start().await;
    let report = tempfile::NamedTempFile::new().unwrap();
    let base_url = stack.stack.base_url();
    let report_path = report.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(newman)
            .current_dir(&postman)
            .args([
                "run",
                "redshift-export.postman_collection.json",
                "--environment",
                "local.postman_environment.json",
                "--env-var",
                &format!("baseUrl={base_url}"),
                "--reporters",
                "cli,json",
                "--reporter-json-export",
            ])
            .arg(&report_path)
            .args(["--timeout-request", "10000", "--color", "off"])
            .output()
            .expect("newman runs")
    })
    .await
    .unwrap();
    let cli = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "newman failed:\n{cli}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let run = &report["run"];
    assert_eq!(run["failures"].as_array().unwrap().len(), 0, "{cli}");
    // Every route was called: the request names of the collection, each at least once.
    let called: std::collections::BTreeSet<&str> = run["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["item"]["name"].as_str().unwrap())
        .collect();
    for name in [
        "List the datasets",
        "Submit an export",
        "Export status",
        "Export history",
        "Fresh download link",
        "Download the archive",
        "List my exports",
        "Cancel an export",
        "Submit a bad request",
        "Submit (original API)",
        "Status, latest (original API)",
        "Status, all (original API)",
        "Partner: my datasets",
        "Partner: export my shipments",
        "Partner: look up my shipments",
        "Partner: another supplier's rows",
        "Partner: an internal dataset",
    ] {
        assert!(called.contains(name), "{name} was not run:\n{cli}");
    }
    let assertions = &run["stats"]["assertions"];
    // One test per request, more for the ones that check several things.
    assert!(assertions["total"].as_u64().unwrap() >= 16, "{assertions}");
    assert_eq!(assertions["failed"], 0, "{cli}");
    stack.stack.stop().await;
}
