//! Exports of any size on the local stack: packaging that runs out of time carries on in the
//! next message, a killed stack carries on from its last checkpoint, and `archive: none`
//! hands out the parts themselves.

use crate::common::*;
use export_api::JobStatus;
use export_client::unpack::unpack;
use export_core::ports::ControlTable;
use serde_json::json;
use std::time::Duration;

/// An export at this scale (about 9 MB of CSV), in parts of at most 5 MB: several parts.
fn large(dir: &tempfile::TempDir) -> export_local::LocalConfig {
    let mut config = config_at_scale(dir, 0.02);
    config.max_file_size_mb = 5;
    config
}

const WHOLE_RANGE: &str = r#"{"ship_from": "1992-01-01", "ship_to": "1998-12-31"}"#;

fn request(archive: &str) -> serde_json::Value {
    json!({"dataset": "shipped_lineitems", "params": serde_json::from_str::<serde_json::Value>(WHOLE_RANGE).unwrap(),
           "archive": archive})
}

async fn steps(stack: &TestStack, id: &str) -> Vec<(String, String)> {
    let events = stack.alice.events(id).await.unwrap();
    events
        .events
        .into_iter()
        .map(|e| (e.step, e.outcome))
        .collect()
}

/// The files of a finished export, through the link its status hands out.
async fn files_of(stack: &TestStack, id: &str) -> Vec<export_client::unpack::ArchiveFile> {
    let link = stack.alice.download_link(id).await.unwrap();
    unpack(&stack.alice.fetch(&link).await.unwrap()).unwrap()
}

#[tokio::test]
async fn packaging_out_of_time_carries_on_and_a_killed_stack_resumes_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = large(&dir);
    // Every poller message's time is up at once: one part per message.
    config.packaging.budget = Some(Duration::ZERO);
    let first = start_with(dir, config.clone()).await;
    let whole = submit_ok(&first.alice, request("tar.gz")).await;
    let status = wait_done(&first.alice, &whole).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    let parts = files_of(&first, &whole).await;
    assert!(parts.len() >= 2, "{} parts", parts.len());
    let paused = steps(&first, &whole)
        .await
        .iter()
        .filter(|(step, outcome)| step == "packaging" && outcome == "paused")
        .count();
    assert_eq!(
        paused,
        parts.len() - 1,
        "a pause before every part but the first"
    );

    // The same export again, the stack killed once packaging has saved a checkpoint.
    let id = submit_ok(&first.alice, request("tar.gz")).await;
    eventually(
        "a packaging checkpoint",
        Duration::from_secs(120),
        || async {
            match first.stack.store.checkpoint(&id).await {
                Ok(Some(saved)) => Ok(saved),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let TestStack { stack, dir, .. } = first;
    stack.kill().await;
    config.packaging.budget = None;
    let second = start_with(dir, config).await;
    let status = wait_done(&second.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    quiet(&second.stack).await;
    let again = files_of(&second, &id).await;
    assert_eq!(again, parts, "the resumed archive holds the same files");
    let history = steps(&second, &id).await;
    for step in ["packaged", "notified"] {
        assert_eq!(
            history.iter().filter(|(s, _)| s == step).count(),
            1,
            "{step}: {history:?}"
        );
    }
    assert_eq!(mails_for(&second.stack, &id).len(), 1);
    assert!(second.stack.store.checkpoint(&id).await.unwrap().is_none());
    second.stack.stop().await;
}

#[tokio::test]
async fn parts_handed_out_as_they_are_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = large(&dir);
    let stack = start_with(dir, config).await;
    let packaged = submit_ok(&stack.alice, request("zip")).await;
    let id = submit_ok(&stack.alice, request("none")).await;
    wait_done(&stack.alice, &packaged).await;
    let status = wait_done(&stack.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    let total = status.total_parts.unwrap();
    assert!(total >= 2, "{status:?}");
    assert!(status.download_url.is_none(), "{status:?}");
    let listed = status.parts.clone().unwrap();
    assert_eq!(listed.len(), total);
    // Each part's link serves it; together they are the packaged export's files.
    let mut files = Vec::new();
    for part in &listed {
        let body = stack.alice.fetch(&part.url).await.unwrap();
        assert_eq!(body.len() as u64, part.size);
        files.push(export_client::unpack::decompressed(&part.name, body.to_vec()).unwrap());
    }
    assert_eq!(files, files_of(&stack, &packaged).await);
    let rows: u64 = listed.iter().map(|p| p.rows).sum();
    assert_eq!(status.summary.rows, Some(rows));
    // A page at a time, and the mail links them.
    let page = stack.alice.parts(&id, Some(1), None).await.unwrap();
    assert_eq!(page.parts.len(), 1);
    let next = page.next_cursor.unwrap();
    let rest = stack
        .alice
        .parts(&id, Some(1000), Some(&next))
        .await
        .unwrap();
    assert_eq!(rest.parts.len(), total - 1);
    assert!(rest.next_cursor.is_none());
    let mail = &wait_for_mails(&stack.stack, &id, 1).await[0];
    assert!(
        mail.text.contains(&format!("{total} parts")),
        "{}",
        mail.text
    );
    stack.stack.stop().await;
}
