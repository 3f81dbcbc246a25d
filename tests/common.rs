//! Shared set-up: a local stack per test, in its own data directory, over TPC-H tables
//! generated once per test run; and [`eventually`], the one way a test waits.

use export_api::{JobStatus, JobView};
use export_client::Client;
use export_core::ports::QueueName;
pub use export_local::sql_source::SqlSource;
use export_local::{LocalConfig, LocalStack};
use redshift_export::local_signer;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Waits for `probe` to answer `Ok`, asking again after a short pause that grows to 200 ms,
/// until `deadline` has passed; then fails with `what` and what the last answer saw.
pub async fn eventually<T, Seen: Debug, Fut: Future<Output = Result<T, Seen>>>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Fut,
) -> T {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        // A probe that does not answer is held to the same deadline (and a little over, so
        // that one started just before it may still answer).
        let left = deadline.saturating_sub(started.elapsed()) + Duration::from_secs(1);
        let Ok(answer) = tokio::time::timeout(left, probe()).await else {
            panic!("{what}: not within {deadline:?}; the last probe did not answer");
        };
        match answer {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= deadline => {
                panic!("{what}: not within {deadline:?}; last seen: {seen:?}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub const SCALE: f64 = 0.01;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates the TPC-H tables once per scale, on a thread of its own (tests run on their own
/// runtimes), for every test to copy.
fn seed_warehouse(scale: f64) -> PathBuf {
    static SEEDS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut seeds = SEEDS.lock().unwrap_or_else(|e| e.into_inner());
    let key = scale.to_string();
    if let Some((_, dir)) = seeds.iter().find(|(k, _)| *k == key) {
        return dir.clone();
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tpch-seed-{scale}"));
    let target = dir.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ctx = export_local::warehouse::redshift_session().unwrap();
            export_local::tables::load_tpch(&ctx, &target, scale)
                .await
                .unwrap();
        });
    })
    .join()
    .unwrap();
    seeds.push((key, dir.clone()));
    dir
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().ends_with(".partial") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A configuration for a stack in a fresh directory, on a free port, with fast polling.
pub fn config(dir: &tempfile::TempDir) -> LocalConfig {
    config_at_scale(dir, SCALE)
}

pub fn config_at_scale(dir: &tempfile::TempDir, scale: f64) -> LocalConfig {
    copy_tree(&seed_warehouse(scale), &dir.path().join("warehouse"));
    let mut config = LocalConfig::new(dir.path().to_owned(), SqlSource::Dir(repo().join("sql")));
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.scale = scale;
    config.processors = 2;
    config.pollers = 2;
    config.poll_initial_delay = std::time::Duration::from_millis(300);
    config.poll_max_delay = std::time::Duration::from_secs(1);
    config
}

pub struct TestStack {
    pub stack: LocalStack,
    pub alice: Client,
    pub bob: Client,
    pub dir: tempfile::TempDir,
    pub scale: f64,
}

pub async fn start_with(dir: tempfile::TempDir, config: LocalConfig) -> TestStack {
    let scale = config.scale;
    let stack = LocalStack::start(config)
        .await
        .expect("the local stack starts");
    let alice = Client::new(&stack.base_url(), local_signer("alice").unwrap()).unwrap();
    let bob = Client::new(&stack.base_url(), local_signer("bob").unwrap()).unwrap();
    TestStack {
        stack,
        alice,
        bob,
        dir,
        scale,
    }
}

pub async fn start() -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir);
    start_with(dir, config).await
}

/// One mail from the outbox, as a mail reader shows it.
#[derive(Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The mails in the outbox that are about `request_id`.
pub fn mails_for(stack: &LocalStack, request_id: &str) -> Vec<Mail> {
    std::fs::read_dir(&stack.outbox)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(request_id))
                .map(|e| {
                    let raw = std::fs::read(e.path()).unwrap();
                    let message = mail_parser::MessageParser::default()
                        .parse(&raw)
                        .expect("an RFC 5322 message");
                    Mail {
                        to: message
                            .to()
                            .map(|to| {
                                to.iter()
                                    .filter_map(|a| a.address())
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        subject: message.subject().unwrap_or("").to_owned(),
                        text: message.body_text(0).unwrap_or_default().into_owned(),
                        html: message.body_html(0).unwrap_or_default().into_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 30 s) until `count` mails about `request_id` are in the outbox.
pub async fn wait_for_mails(stack: &LocalStack, request_id: &str, count: usize) -> Vec<Mail> {
    eventually(
        &format!("{count} mails about {request_id}"),
        Duration::from_secs(30),
        || async {
            let mails = mails_for(stack, request_id);
            if mails.len() >= count {
                Ok(mails)
            } else {
                Err(mails)
            }
        },
    )
    .await
}

/// Waits (up to 30 s) until the job's status is `wanted`.
pub async fn wait_for_status(stack: &TestStack, id: &str, wanted: JobStatus) {
    eventually(
        &format!("{id} {wanted}"),
        Duration::from_secs(30),
        || async {
            let status = stack.alice.status(id).await.unwrap();
            if status.summary.status == wanted {
                Ok(())
            } else {
                Err(status.summary.status)
            }
        },
    )
    .await
}

/// Waits (up to 30 s) until both queues are empty, in flight and delayed messages included:
/// every message sent so far has been handled, so nothing more happens until something new
/// arrives (a sweep tick, a request).
pub async fn quiet(stack: &LocalStack) {
    eventually("both queues empty", Duration::from_secs(30), || async {
        let requests = stack.store.depth(QueueName::Requests).await.unwrap();
        let polls = stack.store.depth(QueueName::Polls).await.unwrap();
        if requests.0 == 0 && polls.0 == 0 {
            Ok(())
        } else {
            Err((requests, polls))
        }
    })
    .await
}

pub async fn submit_ok(client: &Client, request: serde_json::Value) -> String {
    client
        .submit(&request, None)
        .await
        .expect("accepted")
        .request_id
}

/// Alice's one-row `product_detail` export, followed to its end: its id and final status.
pub async fn finished_export(stack: &TestStack) -> (String, JobView) {
    let id = submit_ok(
        &stack.alice,
        serde_json::json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
    )
    .await;
    let status = wait_done(&stack.alice, &id).await;
    (id, status)
}

pub async fn wait_done(client: &Client, id: &str) -> JobView {
    client
        .wait(id, std::time::Duration::from_secs(120), |_| {})
        .await
        .expect("the job ends")
}

/// A copy of `sql/` with catalogue files added (`name`, text) and others removed, for tests
/// that need an export the shipped catalogue does not have.
pub fn sql_dir_with(add: &[(&str, &str)], remove: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("sql"), dir.path());
    for (name, text) in add {
        std::fs::write(dir.path().join("catalog").join(format!("{name}.sql")), text).unwrap();
    }
    for name in remove {
        std::fs::remove_file(dir.path().join("catalog").join(format!("{name}.sql"))).unwrap();
    }
    dir
}

/// Runs the `redshift-export` binary in `cwd` with `args` (no `RUST_LOG`, no catalogue from
/// the environment, no backtraces), failing the test past `deadline`: whether it succeeded,
/// its standard output and its standard error.
pub async fn run_cli(cwd: &Path, args: &[&str], deadline: Duration) -> (bool, String, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_redshift-export"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("EXPORT_SQL_DIR")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let output = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("redshift-export {args:?} did not finish within {deadline:?}"))
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
