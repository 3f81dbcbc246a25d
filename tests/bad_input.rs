//! Every kind of bad request gets its status and a JSON error naming the problem, and leaves
//! no job row and no queued message behind.

use crate::common::*;
use export_core::domain::Owner;
use export_core::ports::{ControlTable, QueueName};
use http::Method;
use serde_json::{json, Value};

async fn leftovers(stack: &TestStack) -> (usize, u64) {
    let alice = Owner("arn:aws:iam::000000000000:user/alice".into());
    let jobs = stack
        .stack
        .store
        .list_jobs(&alice, 100, None)
        .await
        .unwrap()
        .jobs
        .len();
    let (queued, _) = stack.stack.store.depth(QueueName::Requests).await.unwrap();
    (jobs, queued)
}

/// A bad request: what it is, its body and content type, and the status, code and field expected.
struct Case(
    &'static str,
    Vec<u8>,
    &'static str,
    u16,
    &'static str,
    Option<&'static str>,
);

const FORM: &str = "application/x-www-form-urlencoded";

/// Sends a signed POST /exports with a raw body and content type.
async fn post_raw(
    stack: &TestStack,
    body: &[u8],
    content_type: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let url = format!("{}/exports", stack.stack.base_url());
    let mut headers = vec![
        ("host".to_owned(), stack.stack.addr.to_string()),
        ("content-type".to_owned(), content_type.to_owned()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signed = stack.alice.sign("POST", &url, &headers, body).unwrap();
    let mut request = reqwest::Client::new().post(&url).body(body.to_vec());
    for (k, v) in headers.iter().chain(signed.iter()) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_requests_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // No workers: a message that slipped through would stay on the queue and be counted.
    config.processors = 0;
    config.pollers = 0;
    let stack = start_with(dir, config).await;
    let good = json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}});

    let cases = vec![
        Case("malformed JSON", b"{\"dataset\": ".to_vec(), "application/json", 400, "invalid_json", None),
        Case("wrong content type", good.to_string().into_bytes(), "text/plain", 415, "unsupported_media_type", None),
        Case("body over 64 KiB", json!({"dataset": "x".repeat(70_000)}).to_string().into_bytes(), "application/json", 413, "payload_too_large", None),
        Case("unknown dataset", json!({"dataset": "nope"}).to_string().into_bytes(), "application/json", 400, "unknown_dataset", Some("dataset")),
        Case("missing parameter", json!({"dataset": "product_detail", "params": {}}).to_string().into_bytes(), "application/json", 400, "invalid_parameter", Some("params.sku")),
        Case("extra parameter", json!({"dataset": "product_detail", "params": {"sku": "A", "colour": "red"}}).to_string().into_bytes(), "application/json", 400, "invalid_parameter", Some("params.colour")),
        Case("ill-typed parameter", json!({"dataset": "customers", "params": {"ids": ["one"]}}).to_string().into_bytes(), "application/json", 400, "invalid_parameter", Some("params.ids[0]")),
        Case("too long a value", json!({"dataset": "product_detail", "params": {"sku": "x".repeat(21)}}).to_string().into_bytes(), "application/json", 400, "invalid_parameter", Some("params.sku")),
        Case("NUL in a value", json!({"dataset": "product_detail", "params": {"sku": "a\u{0}b"}}).to_string().into_bytes(), "application/json", 400, "invalid_parameter", Some("params.sku")),
        Case("unknown format", json!({"dataset": "product_detail", "params": {"sku": "A"}, "format": "xml"}).to_string().into_bytes(), "application/json", 400, "invalid_request", Some("format")),
        Case("unknown compression", json!({"dataset": "product_detail", "params": {"sku": "A"}, "compression": "lz4"}).to_string().into_bytes(), "application/json", 400, "invalid_request", Some("compression")),
        Case("invalid notify address", json!({"dataset": "product_detail", "params": {"sku": "A"}, "notify": ["bob at example"]}).to_string().into_bytes(), "application/json", 400, "invalid_request", Some("notify[0]")),
        Case("unknown top-level field", json!({"dataset": "product_detail", "params": {"sku": "A"}, "priority": 1}).to_string().into_bytes(), "application/json", 400, "invalid_request", Some("priority")),
        // A key named twice: refused, not read as its last value (serde_json's choice).
        Case("a field named twice", br#"{"dataset": "customers", "dataset": "product_detail", "params": {"sku": "A"}}"#.to_vec(), "application/json", 400, "invalid_request", Some("dataset")),
        Case("a parameter named twice", br#"{"dataset": "product_detail", "params": {"sku": "A", "sku": "B"}}"#.to_vec(), "application/json", 400, "invalid_request", Some("params.sku")),
        // The same request as a form: the same refusals, by the same field names.
        Case("form: no dataset", b"params.sku=A".to_vec(), FORM, 400, "invalid_request", Some("dataset")),
        Case("form: unknown field", b"dataset=product_detail&params.sku=A&priority=1".to_vec(), FORM, 400, "invalid_request", Some("priority")),
        Case("form: a field named twice", b"dataset=customers&dataset=product_detail&params.sku=A".to_vec(), FORM, 400, "invalid_request", Some("dataset")),
        Case("form: a parameter named twice", b"dataset=product_detail&params.sku=A&params.sku=B".to_vec(), FORM, 400, "invalid_parameter", Some("params.sku")),
        Case("form: ill-typed list item", b"dataset=customers&params.ids=1,two".to_vec(), FORM, 400, "invalid_parameter", Some("params.ids[1]")),
        Case("form: missing parameter", b"dataset=product_detail".to_vec(), FORM, 400, "invalid_parameter", Some("params.sku")),
        Case("form: unknown format", b"dataset=product_detail&params.sku=A&format=xml".to_vec(), FORM, 400, "invalid_request", Some("format")),
        Case("form: invalid notify address", b"dataset=product_detail&params.sku=A&notify=bob+at+example".to_vec(), FORM, 400, "invalid_request", Some("notify[0]")),
        Case("form: parquet compressed", b"dataset=product_detail&params.sku=A&format=parquet&compression=gzip".to_vec(), FORM, 400, "invalid_request", Some("compression")),
    ];
    for Case(what, body, content_type, status, code, field) in cases {
        let (got, error) = post_raw(&stack, &body, content_type, &[]).await;
        assert_eq!(got, status, "{what}: {error}");
        assert_eq!(error["error"]["code"], code, "{what}: {error}");
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{what}: {error}");
        }
        assert_eq!(
            leftovers(&stack).await,
            (0, 0),
            "{what} left something behind"
        );
    }

    // A page token or page size the caller made up is the caller's mistake: 400, naming it,
    // never a 5xx a client would retry.
    for (query, field) in [
        ("cursor=junk", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=MTc5NTM5NTIzMDgwNi5ub3QtYS11dWlk", "cursor"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "query"),
    ] {
        let reply = stack
            .alice
            .send(Method::GET, &format!("/exports?{query}"), None, &[])
            .await
            .unwrap();
        let body = reply.json().unwrap();
        assert_eq!(reply.status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }

    // Unknown ids, malformed ids and unknown routes.
    for path in [
        "/exports/00000000-0000-4000-8000-000000000000",
        "/exports/not-an-id",
        "/exports/00000000-0000-4000-8000-000000000000/events",
        "/nowhere",
    ] {
        let reply = stack
            .alice
            .send(Method::GET, path, None, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.json().unwrap()["error"]["code"],
            "not_found",
            "{path}"
        );
    }

    // Idempotency: a replay returns the same job, a different body under the same key is a conflict.
    let (status, first) = post_raw(
        &stack,
        good.to_string().as_bytes(),
        "application/json",
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(status, 202);
    let (status, again) = post_raw(
        &stack,
        json!({"params": {"sku": "FLOWER12"}, "dataset": "product_detail"})
            .to_string()
            .as_bytes(),
        "application/json",
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(again["request_id"], first["request_id"]);
    // As a form, the same request: the same job (the key's digest is of what is asked).
    let (status, as_form) = post_raw(
        &stack,
        b"dataset=product_detail&params.sku=FLOWER12&format=csv",
        FORM,
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(status, 202, "{as_form}");
    assert_eq!(as_form["request_id"], first["request_id"]);
    let (status, conflict) = post_raw(
        &stack,
        json!({"dataset": "product_detail", "params": {"sku": "FLOWER13"}})
            .to_string()
            .as_bytes(),
        "application/json",
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        leftovers(&stack).await,
        (1, 1),
        "one job and one message for the one accepted request"
    );
    // The same key from another caller is another caller's key.
    let from_bob = stack.bob.submit(&good, Some("k-1")).await.unwrap();
    assert_ne!(
        Some(from_bob.request_id.as_str()),
        first["request_id"].as_str()
    );
    stack.stack.stop().await;
}
