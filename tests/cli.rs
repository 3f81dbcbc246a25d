//! The `redshift-export` binary as a person runs it: the demo's story on standard output with
//! the stack's log lines kept out of it, and times people read.

use crate::common::*;
use std::process::Stdio;
use std::time::Duration;

/// Runs the binary in the repository with `args`, failing the test past `deadline`.
async fn run(args: &[&str], deadline: Duration) -> (bool, String, String) {
    run_cli(&repo(), args, deadline).await
}

/// `2026-12-01T18:23:28.806+00:00`, at the start of `line` (after its indentation).
fn starts_with_a_time(line: &str) -> bool {
    let t = line.trim_start().as_bytes();
    t.len() >= 29
        && t[4] == b'-'
        && t[10] == b'T'
        && t[19] == b'.'
        && (t[23] == b'+' || t[23] == b'-' || t[23] == b'Z')
        && t[..4].iter().all(u8::is_ascii_digit)
}

/// A line a `tracing` subscriber wrote: a level word after the timestamp.
fn is_a_log_line(line: &str) -> bool {
    [" INFO ", " WARN ", " ERROR ", " DEBUG "]
        .iter()
        .any(|level| line.contains(level))
}

#[tokio::test]
async fn the_demo_tells_its_story_and_keeps_the_log_apart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("demo");
    let (ok, stdout, stderr) = run(
        &["demo", "--data-dir", data_dir.to_str().unwrap()],
        Duration::from_secs(300),
    )
    .await;
    assert!(ok, "the demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Demo complete"), "{stdout}");
    assert!(
        !stdout.lines().chain(stderr.lines()).any(is_a_log_line),
        "log lines in the story:\n{stdout}\n{stderr}"
    );
    // The history reads as times, not epoch milliseconds.
    let history: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  ") && (l.contains(" submitted ") || l.contains(" packaged ")))
        .collect();
    assert!(history.len() >= 4, "{stdout}");
    assert!(
        history.iter().all(|l| starts_with_a_time(l)),
        "{history:#?}"
    );
    assert!(!stdout.contains("[17"), "{stdout}");
    // The log is in the data directory instead.
    let log = std::fs::read_to_string(data_dir.join("demo.log")).unwrap();
    assert!(log.contains("local stack started"), "{log}");
}

#[tokio::test]
async fn the_cli_shows_a_job_and_its_history_readably_or_as_json() {
    let stack = start().await;
    let (id, _) = finished_export(&stack).await;
    let endpoint = stack.stack.base_url();
    let client = ["--as", "alice", "--endpoint", endpoint.as_str()];
    let deadline = Duration::from_secs(60);

    let (ok, stdout, stderr) =
        run(&[&["status", &id, "--all"], &client[..]].concat(), deadline).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines.iter().all(|l| starts_with_a_time(l)), "{stdout}");
    assert!(
        lines[0].contains("submitted") && lines[4].contains("notified"),
        "{stdout}"
    );

    let (ok, stdout, _) = run(&[&["status", &id], &client[..]].concat(), deadline).await;
    assert!(ok);
    assert!(stdout.contains("status     SUCCEEDED"), "{stdout}");
    let created = stdout.lines().find(|l| l.starts_with("created")).unwrap();
    assert!(
        starts_with_a_time(created.trim_start_matches("created")),
        "{created}"
    );

    let (ok, stdout, _) = run(
        &[&["status", &id, "--all", "--json"], &client[..]].concat(),
        deadline,
    )
    .await;
    assert!(ok);
    let raw: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(raw["events"][0]["at"].is_i64(), "{raw}");

    let (ok, stdout, _) = run(&[&["list"], &client[..]].concat(), deadline).await;
    assert!(ok);
    assert!(
        stdout.contains(&id) && starts_with_a_time(&stdout),
        "{stdout}"
    );

    // `-p name=value` is text; the API types it by the catalogue (a list of integers here).
    let submit = [
        "submit",
        "customers",
        "-p",
        "ids=3, 1",
        "--format",
        "json",
        "--json",
    ];
    let (ok, stdout, stderr) = run(&[&submit[..], &client[..]].concat(), deadline).await;
    assert!(ok, "{stderr}");
    let accepted: export_api::Accepted = serde_json::from_str(&stdout).unwrap();
    let job = stack.alice.status(&accepted.request_id).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(job.params),
        serde_json::json!({"ids": [3, 1]})
    );
    assert_eq!(job.summary.format, export_api::Format::Json);
    // A value of the wrong type is the API's refusal, naming the item; an unknown format is
    // refused before anything is sent.
    let bad = ["submit", "customers", "-p", "ids=1,two"];
    let (ok, _, stderr) = run(&[&bad[..], &client[..]].concat(), deadline).await;
    assert!(!ok && stderr.contains("400 invalid_parameter"), "{stderr}");
    let bad = ["submit", "customers", "-p", "ids=1", "--format", "xml"];
    let (ok, _, stderr) = run(&[&bad[..], &client[..]].concat(), deadline).await;
    assert!(!ok && stderr.contains("csv, parquet, json"), "{stderr}");

    // Bob's quotas, from the shipped policy's suppliers group; and alice, an admin there,
    // lists bob's jobs while bob may not list hers.
    let bob = ["--as", "bob", "--endpoint", endpoint.as_str()];
    let (ok, stdout, stderr) = run(&[&["quota"], &bob[..]].concat(), deadline).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("unfinished exports   0 of 100")
            && stdout.contains("20 a second, 40 at once"),
        "{stdout}"
    );
    let bobs = stack
        .bob
        .submit(
            &serde_json::json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
            None,
        )
        .await
        .unwrap();
    let bob_arn = "arn:aws:iam::000000000000:user/bob";
    let (ok, stdout, stderr) = run(
        &[&["list", "--owner", bob_arn], &client[..]].concat(),
        deadline,
    )
    .await;
    assert!(ok && stdout.contains(&bobs.request_id), "{stdout}{stderr}");
    let alice_arn = "arn:aws:iam::000000000000:user/alice";
    let (ok, _, stderr) = run(
        &[&["list", "--owner", alice_arn], &bob[..]].concat(),
        deadline,
    )
    .await;
    assert!(!ok && stderr.contains("403 forbidden"), "{stderr}");
    stack.stack.stop().await;
}

/// `console --endpoint` signs the page's calls with the AWS credential chain (here, the
/// environment's keys: alice's), so a deployed API sees an ordinary signed caller.
#[tokio::test]
async fn the_console_command_signs_with_the_credential_chain() {
    let stack = start().await;
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_redshift-export"))
        .args(["console", "--endpoint", &stack.stack.base_url()])
        // Port 0: the console binds a free port and prints the address it got.
        .args(["--addr", "127.0.0.1:0"])
        .env("AWS_ACCESS_KEY_ID", "LOCALALICE")
        .env("AWS_SECRET_ACCESS_KEY", "local-alice-secret")
        .env("AWS_REGION", "us-east-1")
        // No profile files, no instance metadata: the environment's keys only.
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    // The address to open, with the token every call must carry.
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("http://") {
                return line;
            }
        }
        panic!("the console printed no address");
    })
    .await
    .expect("the console printed its address within 30 s");
    let (page, token) = address.split_once("?token=").unwrap();
    let console = page
        .strip_suffix("/console/")
        .unwrap_or_else(|| panic!("the page's address: {page}"))
        .to_owned();
    assert!(
        console.starts_with("http://127.0.0.1:") && !console.ends_with(":0"),
        "{console}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let identities: serde_json::Value =
        eventually("the console listening", Duration::from_secs(30), || async {
            let reply = http
                .get(format!("{console}/console/identities"))
                .header("x-console-token", token)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            reply
                .json::<serde_json::Value>()
                .await
                .map_err(|e| e.to_string())
        })
        .await;
    assert_eq!(identities["identities"], serde_json::json!(["aws"]));
    let front = http.get(&console).send().await.unwrap();
    assert_eq!(front.status(), 307);
    assert_eq!(front.headers()["location"], "/console/");

    // Without the token, nothing is signed.
    let tokenless = http
        .get(format!("{console}/console/api/datasets"))
        .header("x-console-identity", "aws")
        .send()
        .await
        .unwrap();
    assert_eq!(tokenless.status(), 403);

    // A submit through the proxy: alice owns the job, as if she had called the API herself.
    let submitted = http
        .post(format!("{console}/console/api/exports"))
        .header("x-console-identity", "aws")
        .header("x-console-token", token)
        .json(&serde_json::json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let id = submitted.json::<serde_json::Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.alice.status(&id).await.unwrap().summary.dataset,
        "product_detail"
    );
    let bobs = stack
        .bob
        .send(http::Method::GET, &format!("/exports/{id}"), None, &[])
        .await
        .unwrap();
    assert_eq!(bobs.status, 404);
    // The API's own refusals come back unchanged.
    let bad = serde_json::json!({"dataset": "nope"});
    let refused = http
        .post(format!("{console}/console/api/exports"))
        .header("x-console-identity", "aws")
        .header("x-console-token", token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    let direct = stack
        .alice
        .send(http::Method::POST, "/exports", Some(&bad), &[])
        .await
        .unwrap();
    assert_eq!(refused.status(), direct.status);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap(),
        direct.json().unwrap()
    );

    // In a browser: the page takes the token from the address it was opened at, drops it
    // from the address bar, and shows the catalogue.
    let browser = crate::browser::Browser::start().await;
    browser.goto(&address).await;
    browser
        .wait_for(
            "the catalogue through the tokened console",
            Duration::from_secs(20),
            "return document.querySelectorAll('#datasets > li').length;",
        )
        .await;
    let shown = browser
        .eval("return location.href;", serde_json::json!([]))
        .await;
    assert_eq!(
        shown,
        format!("{console}/console/"),
        "the token left the address bar"
    );
    browser.close().await;

    child.start_kill().unwrap();
    let _ = child.wait().await;
    stack.stack.stop().await;
}

/// `audit` reads the local stack's record: every export, lookup and link, refused ones too,
/// filtered by caller, dataset, kind and time.
#[tokio::test]
async fn the_audit_command_reads_the_record_filtered() {
    let stack = start().await;
    let started = chrono::Utc::now().timestamp_millis();
    let (id, _) = finished_export(&stack).await;
    // Bob asks for a dataset that is internal: refused, as one that does not exist.
    let refused = stack
        .bob
        .lookup("customers", &[("ids", "1")])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("404"), "{refused}");
    let data_dir = stack.dir.path().to_str().unwrap().to_owned();
    let deadline = Duration::from_secs(60);

    let (ok, stdout, stderr) = run(&["audit", "--data-dir", &data_dir, "--json"], deadline).await;
    assert!(ok, "{stderr}");
    let records: Vec<export_api::AuditRecord> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: export_api::AuditKind| records.iter().filter(move |r| r.kind == kind);
    assert!(of(export_api::AuditKind::Export).any(|r| r.request_id.as_deref() == Some(&id)));
    assert!(
        of(export_api::AuditKind::ExportEnded).any(|r| r.outcome == "succeeded"
            && r.request_id.as_deref() == Some(&id)
            && r.rows == Some(1))
    );
    assert!(of(export_api::AuditKind::Link).any(|r| r.request_id.as_deref() == Some(&id)));

    // Bob's record only: the refused lookup, with what he asked.
    let (ok, stdout, stderr) = run(
        &["audit", "--data-dir", &data_dir, "--caller", "user/bob"],
        deadline,
    )
    .await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].contains("lookup")
            && lines[0].contains("refused")
            && lines[0].contains("customers")
            && lines[0].contains("(404 unknown_dataset)"),
        "{stdout}"
    );
    assert!(starts_with_a_time(lines[0]), "{stdout}");

    // By dataset and kind, and by time: nothing before the test started.
    let (ok, stdout, _) = run(
        &[
            "audit",
            "--data-dir",
            &data_dir,
            "--dataset",
            "product_detail",
            "--kind",
            "export",
        ],
        deadline,
    )
    .await;
    assert!(ok);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (ok, stdout, _) = run(
        &[
            "audit",
            "--data-dir",
            &data_dir,
            "--until",
            &started.to_string(),
        ],
        deadline,
    )
    .await;
    assert!(ok && stdout.is_empty(), "{stdout}");
    let (ok, _, stderr) = run(
        &["audit", "--data-dir", &data_dir, "--kind", "reads"],
        deadline,
    )
    .await;
    assert!(!ok && stderr.contains("one of export"), "{stderr}");
    stack.stack.stop().await;
}

/// A notice signed by an independent implementation of the scheme (Python's `hmac`, as a
/// partner would write it) verifies with `verify-webhook`; a changed body or an old one does not.
#[tokio::test]
async fn a_notice_signed_by_python_s_hmac_verifies_and_a_changed_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("notice.json");
    std::fs::write(
        &body,
        br#"{"request_id":"r1","status":"SUCCEEDED","rows":3}"#,
    )
    .unwrap();
    let sign = |at: &str| {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import hmac, hashlib, sys\n\
                 body = open(sys.argv[1], 'rb').read()\n\
                 t = sys.argv[2]\n\
                 mac = hmac.new(b'whsec_partner', t.encode() + b'.' + body, hashlib.sha256)\n\
                 print(f't={t},v1={mac.hexdigest()}')",
                body.to_str().unwrap(),
                at,
            ])
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let now = chrono::Utc::now().timestamp().to_string();
    let header = sign(&now);
    let verify = |header: String| {
        let body = body.to_str().unwrap().to_owned();
        async move {
            let args = [
                "verify-webhook",
                "--secret",
                "whsec_partner",
                "--signature",
                &header,
                "--body",
                &body,
            ];
            run(&args, Duration::from_secs(30)).await
        }
    };
    let (ok, stdout, stderr) = verify(header.clone()).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("The signature verifies"), "{stdout}");

    std::fs::write(
        &body,
        br#"{"request_id":"r1","status":"SUCCEEDED","rows":4}"#,
    )
    .unwrap();
    let (ok, _, stderr) = verify(header).await;
    assert!(!ok);
    assert!(stderr.contains("no v1 signature matches"), "{stderr}");

    let an_hour_ago = (chrono::Utc::now().timestamp() - 3600).to_string();
    let (ok, _, stderr) = verify(sign(&an_hour_ago)).await;
    assert!(!ok);
    assert!(stderr.contains("more than the 300 s allowed"), "{stderr}");
}
