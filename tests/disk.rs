//! The data directory's disk full: every request is answered, with a clear JSON error where
//! it cannot be served; nothing already stored is damaged; and once space returns, new
//! exports run and what was accepted meanwhile ends. Read-only: the stack does not start, and
//! says why; once writable again it starts with everything as it was. (A running stack's
//! file system cannot be made read-only under it: the kernel refuses to remount a file
//! system read-only while files on it are open for writing.)
//!
//! The data directory is a small tmpfs of its own, which takes root to mount; as any other
//! user the test says so and does nothing.

use crate::common::{self, eventually, submit_ok, wait_done};
use export_api::{JobStatus, JobSummary};
use export_client::Client;
use export_core::ports::QueueName;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Submits tried while the disk is full: enough to outlast the room SQLite's write-ahead log
/// already has.
const SUBMITS_WHILE_FULL: u64 = 40;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("disk: not root, so no tmpfs can be mounted; the disk tests do nothing");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs at {}", at.display());
        Some(Tmpfs(at.to_owned()))
    }

    /// Remounts it `mode` (`ro`, `rw`). A stopped stack's files close on threads of their
    /// own, shortly after it stops, and `ro` is refused ("busy") until the last one has.
    async fn remount(&self, mode: &str) {
        eventually(
            &format!("remounting {} {mode}", self.0.display()),
            Duration::from_secs(20),
            || async {
                let output = Command::new("mount")
                    .args(["-o", &format!("remount,{mode}")])
                    .arg(&self.0)
                    .output()
                    .expect("mount runs");
                if output.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&output.stderr).into_owned())
                }
            },
        )
        .await
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system with one file until it refuses another byte.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 1 << 20];
    loop {
        if let Err(e) = file.write_all(&block).and_then(|_| file.sync_data()) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
            return;
        }
    }
}

fn export_request(n: u64) -> Value {
    json!({"dataset": "customers", "params": {"ids": [n, n + 1, n + 2]}})
}

/// A submit while the disk cannot be written: accepted, or refused with the API's JSON error
/// saying the dependency is unavailable; never anything else.
async fn submit_or_refused(client: &Client, n: u64) -> Option<String> {
    let reply = client
        .send(
            http::Method::POST,
            "/exports",
            Some(&export_request(n)),
            &[],
        )
        .await
        .unwrap();
    let body = reply.json().unwrap();
    match reply.status.as_u16() {
        202 => Some(body["request_id"].as_str().unwrap().to_owned()),
        503 => {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            None
        }
        other => panic!("a submit on a full or read-only disk answered {other}: {body}"),
    }
}

/// Every job of alice's ended, each SUCCEEDED or FAILED saying why.
async fn all_ended(client: &Client) -> Vec<JobSummary> {
    eventually("every job ended", Duration::from_secs(120), || async {
        let jobs = match client.jobs(Some(100), None).await {
            Ok(page) => page.jobs,
            Err(e) => return Err(e.to_string()),
        };
        let ended = |j: &JobSummary| matches!(j.status, JobStatus::Succeeded | JobStatus::Failed);
        if jobs.iter().all(ended) {
            Ok(jobs)
        } else {
            Err(format!("{jobs:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_read_only_disk_answers_clearly_and_recovers() {
    let outer = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&outer.path().join("disk"), "64m") else {
        return;
    };
    let dir = tempfile::tempdir_in(&disk.0).unwrap();
    let mut config = common::config(&dir);
    // A submit whose message cannot be queued removes its job, but on a full disk that removal
    // can fail too, leaving a QUEUED job with no message: the sweep is what queues it again.
    // Soon, here, so that it runs within the wait for every job to end.
    config.sweep_every = Duration::from_secs(2);
    config.sweep_after = Duration::from_secs(5);
    let stack = common::start_with(dir, config.clone()).await;
    let alice = &stack.alice;

    // Before: one export, its archive kept to compare.
    let before = submit_ok(alice, export_request(1)).await;
    assert_eq!(
        wait_done(alice, &before).await.summary.status,
        JobStatus::Succeeded
    );
    let archive = alice
        .fetch(&alice.download_link(&before).await.unwrap())
        .await
        .unwrap();

    // Full: reads answer, writes are refused clearly or accepted and carried on later.
    let filler = disk.0.join("filler");
    fill(&filler);
    let mut accepted = Vec::new();
    for n in 0..SUBMITS_WHILE_FULL {
        accepted.extend(submit_or_refused(alice, 10 + n * 3).await);
    }
    assert!(
        (accepted.len() as u64) < SUBMITS_WHILE_FULL,
        "every submit was accepted: the disk never filled"
    );
    // The job's state answers. Its link and a lookup's rows leave only once on the audit
    // record: answered if the record's line still fitted (the file's last page may have
    // room), else refused with 503 and, for the state, no link.
    let status = alice.status(&before).await.unwrap();
    assert_eq!(status.summary.status, JobStatus::Succeeded);
    match alice.lookup("customers", &[("ids", "1,2")]).await {
        Ok(lookup) => assert_eq!(lookup.row_count, 2, "{lookup:?}"),
        Err(refused) => {
            let refused = refused.downcast_ref::<export_client::Refused>().unwrap();
            assert_eq!(refused.status, 503, "{refused:?}");
        }
    }

    // Space returns: lookups answer, new exports run, and what was accepted meanwhile ends.
    std::fs::remove_file(&filler).unwrap();
    let lookup = alice.lookup("customers", &[("ids", "1,2")]).await.unwrap();
    assert_eq!(lookup.row_count, 2, "{lookup:?}");
    let after_full = submit_ok(alice, export_request(100)).await;
    assert_eq!(
        wait_done(alice, &after_full).await.summary.status,
        JobStatus::Succeeded
    );

    // Everything ended, and says why if it failed; nothing stored before was damaged.
    let jobs = all_ended(alice).await;
    for job in &jobs {
        if job.status == JobStatus::Failed {
            assert!(job.error.as_ref().is_some_and(|e| !e.is_empty()), "{job:?}");
        }
    }
    for id in &accepted {
        assert!(jobs.iter().any(|j| j.request_id == *id), "{id}");
    }
    let again = alice
        .fetch(&alice.download_link(&before).await.unwrap())
        .await
        .unwrap();
    assert!(again == archive, "the earlier archive changed");
    common::quiet(&stack.stack).await;
    assert_eq!(stack.stack.store.integrity_check().await.unwrap(), "ok");
    for queue in [QueueName::Requests, QueueName::Polls] {
        assert_eq!(
            stack.stack.store.depth(queue).await.unwrap().1,
            0,
            "{queue:?}"
        );
    }
    eprintln!(
        "disk: {} of {SUBMITS_WHILE_FULL} submits accepted while full; jobs: {:?}",
        accepted.len(),
        jobs.iter()
            .map(|j| format!("{} {:?}", j.status, j.error))
            .collect::<Vec<_>>()
    );

    // Read-only: no start, and the reason; writable again: a start with all as it was.
    stack.stack.stop().await;
    disk.remount("ro").await;
    let refused = export_local::LocalStack::start(config.clone())
        .await
        .err()
        .expect("a stack on a read-only data directory does not start");
    let reason = format!("{refused:#}");
    assert!(reason.to_lowercase().contains("read"), "{reason}");
    disk.remount("rw").await;
    let restarted = export_local::LocalStack::start(config).await.unwrap();
    let alice = Client::new(
        &restarted.base_url(),
        redshift_export::local_signer("alice").unwrap(),
    )
    .unwrap();
    assert_eq!(
        alice.status(&before).await.unwrap().summary.status,
        JobStatus::Succeeded
    );
    let after = submit_ok(&alice, export_request(300)).await;
    assert_eq!(
        wait_done(&alice, &after).await.summary.status,
        JobStatus::Succeeded
    );
    assert_eq!(restarted.store.integrity_check().await.unwrap(), "ok");
    eprintln!("disk: read-only data directory: {reason}");
    restarted.stop().await;
}
