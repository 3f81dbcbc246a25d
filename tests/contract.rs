//! The API against its contract: `GET /openapi.json` serves the committed description, and
//! schemathesis (from PyPI) generates requests from it for every operation, signs each with
//! SigV4 (`contract/sigv4_hook.py`), and checks every answer: no 5xx, each status code
//! documented, each body and header as documented.

use crate::common::{self, repo};
use export_local::sigv4::{LocalIdentity, REGION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The schemathesis release the suite runs, and the botocore that signs for it.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const BOTOCORE: &str = "botocore==1.44.8";

/// Generated cases per operation and phase, and the seed, so a run can be repeated
/// exactly (`CONTRACT_SEED`, `CONTRACT_EXAMPLES` change them).
const EXAMPLES: &str = "50";
const SEED: &str = "20261202";

/// How long the whole run may take before the test fails with what it printed.
const DEADLINE: Duration = Duration::from_secs(600);

/// The checks: no server error, every status code documented, and each response's
/// content type, headers and body as its operation documents them.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn venv() -> PathBuf {
    std::env::var_os("SCHEMATHESIS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".schemathesis-venv"))
}

/// Creates the virtual environment and installs schemathesis into it, unless it is there.
fn ensure_installed() -> PathBuf {
    let bin = venv().join("bin");
    let check = format!(
        "import importlib.metadata as m, botocore; assert m.version('schemathesis') == '{}'",
        SCHEMATHESIS.trim_start_matches("schemathesis==")
    );
    let ready = || {
        Command::new(bin.join("python"))
            .args(["-c", &check])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let created = Command::new(&python)
            .args(["-m", "venv"])
            .arg(venv())
            .status()
            .expect("python3 runs");
        assert!(created.success(), "could not create {}", venv().display());
        let installed = Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args([SCHEMATHESIS, BOTOCORE])
            .status()
            .expect("pip runs");
        assert!(
            installed.success() && ready(),
            "could not install {SCHEMATHESIS}"
        );
    }
    bin.join("schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_the_committed_contract() {
    let stack = common::start().await;
    let reply = stack
        .alice
        .send(http::Method::GET, "/openapi.json", None, &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let committed = std::fs::read(repo().join("docs/openapi.json")).unwrap();
    assert!(
        reply.body == committed,
        "GET /openapi.json is not docs/openapi.json"
    );
    // Signed, like every route.
    let unsigned = reqwest::get(format!("{}/openapi.json", stack.stack.base_url()))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_as_the_contract_documents_it() {
    let schemathesis = tokio::task::spawn_blocking(ensure_installed).await.unwrap();
    let stack = common::start().await;
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("answers.ndjson");
    let identity = LocalIdentity::demo_named("alice").unwrap();
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| SEED.into());
    let examples = std::env::var("CONTRACT_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let mut command = Command::new(schemathesis);
    command
        .arg("run")
        .arg(repo().join("docs/openapi.json"))
        .args(["--url", &stack.stack.base_url()])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--workers", "2", "--request-timeout", "20", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "sigv4_hook")
        .env("PYTHONPATH", repo().join("tests/contract"))
        .env("CONTRACT_ACCESS_KEY_ID", &identity.access_key)
        .env("CONTRACT_SECRET_ACCESS_KEY", &identity.secret_key)
        .env("CONTRACT_REGION", REGION)
        .env("CONTRACT_LOG", &log)
        // Hypothesis keeps its example database in the working directory.
        .current_dir(work.path());
    let printed = work_output(&log);
    let (status, output) = tokio::task::spawn_blocking(move || run(command, &printed))
        .await
        .unwrap();
    let answers = read_answers(&log);
    let summary = summarize(&answers);
    assert!(
        status,
        "schemathesis found answers the contract does not allow:\n{output}\n{summary}"
    );
    // Signing worked on every operation: each was answered something other than 403.
    let signed: BTreeSet<_> = answers
        .iter()
        .filter(|a| a.2 != 403)
        .map(|a| (a.0.clone(), a.1.clone()))
        .collect();
    let operations = export_core::http::contract_operations(export_core::http::contract());
    let unsigned: Vec<_> = operations.difference(&signed).collect();
    assert!(
        unsigned.is_empty(),
        "only 403 for {unsigned:?}: the hook's signatures do not pass\n{summary}"
    );
    eprintln!("contract: {} generated requests\n{summary}", answers.len());
    for refused in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        if refused.contains("\"status\": 403") {
            eprintln!("  refused: {refused}");
        }
    }
    drop(stack);
}

/// Where schemathesis's own output goes (beside the answers' log).
fn work_output(log: &Path) -> PathBuf {
    log.with_file_name("schemathesis.out")
}

/// Runs `command` with its output in `output`, killing it at the deadline; whether it
/// succeeded, and what it printed.
fn run(mut command: Command, output: &Path) -> (bool, String) {
    let file = std::fs::File::create(output).unwrap();
    let mut child = command
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("schemathesis starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(output).unwrap_or_default();
    match status {
        Some(status) => (status.success(), printed),
        None => (false, format!("{printed}\n(killed after {DEADLINE:?})")),
    }
}

/// (method, route, status) of each answer the hook logged.
fn read_answers(log: &Path) -> Vec<(String, String, u16)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            (
                v["method"].as_str().unwrap_or("").to_owned(),
                v["path"].as_str().unwrap_or("").to_owned(),
                v["status"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}

/// One line per operation: how many answers of each status.
fn summarize(answers: &[(String, String, u16)]) -> String {
    let mut counts: BTreeMap<(String, String), BTreeMap<u16, usize>> = BTreeMap::new();
    for (method, path, status) in answers {
        *counts
            .entry((method.clone(), path.clone()))
            .or_default()
            .entry(*status)
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|((method, path), statuses)| {
            let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            format!("  {method} {path}: {}", statuses.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
