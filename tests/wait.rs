//! `POST /exports?wait=`: a small export answered finished, with its link, in the one request;
//! a slow one answered 202 as without the wait; a wait the API does not take refused.

use crate::common::*;
use export_api::{Accepted, JobStatus, JobView};
use http::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_small_export_is_answered_finished_within_its_wait() {
    let stack = start().await;
    let body = json!({"dataset": "customers", "params": {"ids": [1, 2]}});
    let reply = stack
        .alice
        .send(Method::POST, "/exports?wait=20s", Some(&body), &[])
        .await
        .unwrap();
    assert_eq!(reply.status.as_u16(), 200, "{:?}", reply.json());
    let view: JobView = reply.read().unwrap();
    assert_eq!(view.summary.status, JobStatus::Succeeded);
    assert_eq!(view.summary.rows, Some(2));
    let link = view.download_url.expect("a link with the finished job");
    assert!(!stack.alice.fetch(&link).await.unwrap().is_empty());
    assert_eq!(
        reply.headers["location"],
        format!("/exports/{}", view.summary.request_id)
    );

    for bad in ["wait=forever", "wait=26s", "wait=-1", "colour=red"] {
        let reply = stack
            .alice
            .send(Method::POST, &format!("/exports?{bad}"), Some(&body), &[])
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), 400, "{bad}: {:?}", reply.json());
    }
    stack.stack.stop().await;
}

#[tokio::test]
async fn an_export_slower_than_its_wait_is_answered_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // Every statement takes two seconds at least.
    config.statement_delay = Duration::from_secs(2);
    let stack = start_with(dir, config).await;
    let body = json!({"dataset": "customers", "params": {"ids": [1]}});
    let reply = stack
        .alice
        .send(Method::POST, "/exports?wait=300ms", Some(&body), &[])
        .await
        .unwrap();
    assert_eq!(reply.status.as_u16(), 202, "{:?}", reply.json());
    let accepted: Accepted = reply.read().unwrap();
    let done = wait_done(&stack.alice, &accepted.request_id).await;
    assert_eq!(done.summary.status, JobStatus::Succeeded);
    stack.stack.stop().await;
}
