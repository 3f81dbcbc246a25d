//! Cancelling, and surviving a restart in the middle of a job.

use crate::common::*;
use export_api::JobStatus;
use export_core::messages::Message;
use export_core::ports::{QueueName, QueueSender};
use http::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_long_export_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.statement_delay = Duration::from_secs(3);
    let stack = start_with(dir, config).await;
    let id = submit_ok(&stack.alice, json!({"dataset": "shipped_lineitems", "params": {"ship_from": "1992-01-01", "ship_to": "1998-12-31"}})).await;
    wait_for_status(&stack, &id, JobStatus::Running).await;
    let cancelled = stack.alice.cancel(&id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let status = stack.alice.status(&id).await.unwrap();
    assert_eq!(status.summary.status, JobStatus::Cancelled);
    let steps: Vec<String> = stack
        .alice
        .events(&id)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.step.as_str().to_owned())
        .collect();
    assert_eq!(
        steps,
        ["submitted", "started", "cancelled", "statement_cancelled"]
    );
    let again = stack
        .alice
        .send(Method::DELETE, &format!("/exports/{id}"), None, &[])
        .await
        .unwrap();
    assert_eq!(again.status, 409);
    assert_eq!(again.json().unwrap()["error"]["code"], "already_finished");
    let download = stack
        .alice
        .send(Method::GET, &format!("/exports/{id}/download"), None, &[])
        .await
        .unwrap();
    assert_eq!(download.status, 409);
    // Once every message about it has been handled, it is still cancelled and nothing was
    // packaged or mailed.
    quiet(&stack.stack).await;
    assert_eq!(
        stack.alice.status(&id).await.unwrap().summary.status,
        JobStatus::Cancelled
    );
    assert!(mails_for(&stack.stack, &id).is_empty());
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_restart_mid_job_still_ends_succeeded_once_with_one_email() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.statement_delay = Duration::from_millis(1500);
    config.visibility_timeout = Duration::from_secs(1);
    let first = start_with(dir, config.clone()).await;
    let id = submit_ok(
        &first.alice,
        json!({"dataset": "customers", "params": {"ids": [1, 2, 3]}}),
    )
    .await;
    wait_for_status(&first, &id, JobStatus::Running).await;
    let TestStack { stack, dir, .. } = first;
    stack.kill().await;

    config.statement_delay = Duration::ZERO;
    let second = start_with(dir, config).await;
    let status = wait_done(&second.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded, "{status:?}");
    assert_eq!(status.summary.rows, Some(3));
    // Let any redelivered message or duplicate event run its course, then count.
    quiet(&second.stack).await;
    let events = second.alice.events(&id).await.unwrap();
    let steps: Vec<&str> = events.events.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(
        steps.iter().filter(|s| **s == "packaged").count(),
        1,
        "{steps:?}"
    );
    assert_eq!(
        steps.iter().filter(|s| **s == "notified").count(),
        1,
        "{steps:?}"
    );
    assert_eq!(mails_for(&second.stack, &id).len(), 1);
    second.stack.stop().await;
}

#[tokio::test]
async fn a_redelivered_start_message_starts_no_second_statement() {
    let stack = start().await;
    let (id, status) = finished_export(&stack).await;
    assert_eq!(status.summary.status, JobStatus::Succeeded);
    let statement = status.statement_id.clone().unwrap().to_owned();
    let store = stack.stack.store.clone();
    store
        .send(&Message::start(&id), Duration::ZERO)
        .await
        .unwrap();
    // The duplicate is handled and acknowledged, not dead-lettered.
    quiet(&stack.stack).await;
    assert_eq!(store.depth(QueueName::Requests).await.unwrap(), (0, 0));
    let after = stack.alice.status(&id).await.unwrap();
    assert_eq!(after.statement_id.clone().unwrap(), statement);
    assert_eq!(after.summary.status, JobStatus::Succeeded);
    assert_eq!(mails_for(&stack.stack, &id).len(), 1);
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_failing_statement_fails_the_job_with_its_error_and_a_notice() {
    // It plans (the catalogue check at start lets it through) and fails as it runs.
    let sql = sql_dir_with(&[("broken", "-- export: broken\n-- description: Divides by zero as it runs.\n-- param: id integer\nSELECT product_id / (product_id - product_id) AS ratio FROM rsdataapi.product_detail WHERE product_id = :id\n")], &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sql = SqlSource::Dir(sql.path().to_owned());
    let stack = start_with(dir, config).await;
    let id = submit_ok(
        &stack.alice,
        json!({"dataset": "broken", "params": {"id": 12345}}),
    )
    .await;
    let status = wait_done(&stack.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Failed, "{status:?}");
    let error = status.summary.error.as_deref().unwrap();
    assert!(
        error.starts_with("ERROR: ") && error.contains("Divide by zero"),
        "{error}"
    );
    let mails = wait_for_mails(&stack.stack, &id, 1).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].subject.starts_with("Export broken failed"),
        "{:?}",
        mails[0]
    );
    // To the stack's default address (the request named none), in both alternatives.
    assert_eq!(mails[0].to, ["exports@localhost"]);
    assert!(
        mails[0].text.contains("Divide by zero") && mails[0].html.contains("Divide by zero"),
        "{:?}",
        mails[0]
    );
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_job_whose_export_left_the_catalogue_fails_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.processors = 0;
    let first = start_with(dir, config.clone()).await;
    let id = submit_ok(
        &first.alice,
        json!({"dataset": "customers", "params": {"ids": [1]}}),
    )
    .await;
    let TestStack { stack, dir, .. } = first;
    stack.stop().await;

    // The export is withdrawn while the job waits in the queue.
    let sql = sql_dir_with(&[], &["customers"]);
    config.sql = SqlSource::Dir(sql.path().to_owned());
    config.processors = 2;
    let second = start_with(dir, config).await;
    let status = wait_done(&second.alice, &id).await;
    assert_eq!(status.summary.status, JobStatus::Failed);
    assert!(status
        .summary
        .error
        .as_deref()
        .unwrap()
        .contains("no longer in the catalogue"));
    assert!(status.statement_id.is_none(), "nothing ran");
    let mails = wait_for_mails(&second.stack, &id, 1).await;
    assert_eq!(mails.len(), 1, "the failure is mailed");
    assert!(
        mails[0].text.contains("no longer in the catalogue"),
        "{mails:?}"
    );
    second.stack.stop().await;
}
