//! Partner access on the local stack, attacked as the injection defences are: bob (supplier 7)
//! against the internal datasets on every route, every way to name a bound value himself, an
//! idempotency key reused with other values, and two partners whose lookups look alike.

use crate::common::*;
use export_api::{Archive, JobStatus};
use export_client::Client;
use export_local::sigv4::LocalIdentity;
use http::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const FORM: &str = "application/x-www-form-urlencoded";
const ONE_YEAR: [(&str, &str); 2] = [("ship_from", "1995-01-01"), ("ship_to", "1995-12-31")];

/// A signed request with a raw body: its status and JSON answer.
async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> (u16, Value) {
    let (payload, headers) = match body {
        Some((content_type, bytes)) => (bytes.to_vec(), vec![("content-type", content_type)]),
        None => (Vec::new(), vec![]),
    };
    let reply = client
        .send_bytes(method, path, payload, &headers)
        .await
        .unwrap();
    let status = reply.status.as_u16();
    (status, reply.json().unwrap_or(Value::Null))
}

/// Jobs anyone has (bob's and alice's) and requests queued: what a refusal must leave alone.
async fn recorded(stack: &TestStack) -> (usize, usize) {
    let alice = stack.alice.jobs(Some(100), None).await.unwrap().jobs.len();
    let bob = stack.bob.jobs(Some(100), None).await.unwrap().jobs.len();
    (alice, bob)
}

#[tokio::test]
async fn each_caller_sees_only_its_datasets_with_its_bound_values() {
    let stack = start().await;
    let names = |d: &export_api::Datasets| -> Vec<String> {
        d.datasets.iter().map(|d| d.name.clone()).collect()
    };
    let alice = stack.alice.datasets().await.unwrap();
    assert_eq!(
        names(&alice),
        [
            "customers",
            "product_detail",
            "shipped_lineitems",
            "supplier_shipments"
        ]
    );
    let bob = stack.bob.datasets().await.unwrap();
    assert_eq!(names(&bob), ["product_detail", "supplier_shipments"]);
    let shipments = |d: &export_api::Datasets| {
        d.datasets
            .iter()
            .find(|d| d.name == "supplier_shipments")
            .unwrap()
            .params[0]
            .clone()
    };
    let (theirs, his) = (shipments(&alice), shipments(&bob));
    assert_eq!(his.bound.as_deref(), Some("supplier"));
    assert_eq!(his.value, Some(json!([7])));
    assert_eq!(theirs.value, Some(json!([1, 2, 3])));
    // One dataset at a time, the same.
    let (status, one) = call(
        &stack.bob,
        Method::GET,
        "/datasets/supplier_shipments",
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["params"][0]["value"], json!([7]));
    stack.stack.stop().await;
}

#[tokio::test]
async fn an_internal_dataset_does_not_exist_for_a_partner_on_any_route() {
    let stack = start().await;
    let before = recorded(&stack).await;
    // Every route that names a dataset, for `name`: what it answers bob.
    async fn routes(stack: &TestStack, name: &str) -> Vec<(String, u16, Value)> {
        let json_body = json!({"dataset": name, "params": {"ids": [1]}}).to_string();
        let form_body = format!("dataset={name}&params.ids=1");
        let own_json = json!({"params": {"ids": [1]}}).to_string();
        let mut answers = Vec::new();
        for (what, method, path, body) in [
            (
                "POST /exports",
                Method::POST,
                "/exports".to_owned(),
                Some(("application/json", json_body.as_bytes())),
            ),
            (
                "POST /exports (form)",
                Method::POST,
                "/exports".to_owned(),
                Some((FORM, form_body.as_bytes())),
            ),
            (
                "POST /datasets/{name}/exports",
                Method::POST,
                format!("/datasets/{name}/exports"),
                Some(("application/json", own_json.as_bytes())),
            ),
            (
                "POST /datasets/{name}/exports (form)",
                Method::POST,
                format!("/datasets/{name}/exports"),
                Some((FORM, b"params.ids=1".as_slice())),
            ),
            (
                "GET /datasets/{name}",
                Method::GET,
                format!("/datasets/{name}"),
                None,
            ),
            (
                "GET /lookups/{name}",
                Method::GET,
                format!("/lookups/{name}?ids=1"),
                None,
            ),
            (
                "GET /datasets/{name}/lookup",
                Method::GET,
                format!("/datasets/{name}/lookup?ids=1"),
                None,
            ),
        ] {
            let (status, body) = call(&stack.bob, method, &path, body).await;
            answers.push((what.to_owned(), status, body));
        }
        answers
    }
    let hidden = routes(&stack, "customers").await;
    let missing = routes(&stack, "no_such_dataset").await;
    for ((what, status, body), (_, missing_status, missing_body)) in hidden.iter().zip(&missing) {
        assert!(*status == 400 || *status == 404, "{what}: {status} {body}");
        assert_eq!(body["error"]["code"], "unknown_dataset", "{what}: {body}");
        // Word for word the answer for a dataset that does not exist.
        assert_eq!(
            (status, body.to_string().replace("customers", "X")),
            (
                missing_status,
                missing_body.to_string().replace("no_such_dataset", "X")
            ),
            "{what}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("(available: product_detail, supplier_shipments)"),
            "{what}: {message}"
        );
    }
    // The second seed's route is a lookup of `customers`.
    let (status, body) = call(&stack.bob, Method::GET, "/customer/1,2", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_dataset")),
        "{body}"
    );
    // Alice, internal, has it.
    let (status, body) = call(&stack.alice, Method::GET, "/datasets/customers", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(recorded(&stack).await, before, "a refusal recorded a job");
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_bound_value_cannot_be_given_by_any_route_or_spelling() {
    let stack = start().await;
    let before = recorded(&stack).await;
    let range = r#""ship_from": "1995-01-01", "ship_to": "1995-12-31""#;
    let json_cases: Vec<(&str, String, &str)> = vec![
        (
            "the bound name",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"suppliers": [8], {range}}}}}"#
            ),
            "params.suppliers",
        ),
        (
            "another letter case",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"Suppliers": [8], {range}}}}}"#
            ),
            "params.Suppliers",
        ),
        (
            "capitals",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"SUPPLIERS": [7], {range}}}}}"#
            ),
            "params.SUPPLIERS",
        ),
        (
            "his own value",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"suppliers": [7], {range}}}}}"#
            ),
            "params.suppliers",
        ),
        (
            "null",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"suppliers": null, {range}}}}}"#
            ),
            "params.suppliers",
        ),
        (
            "a key named twice",
            format!(
                r#"{{"dataset": "supplier_shipments", "params": {{"suppliers": [7], "suppliers": [8], {range}}}}}"#
            ),
            "params.suppliers",
        ),
    ];
    for (what, body, field) in &json_cases {
        let (status, answer) = call(
            &stack.bob,
            Method::POST,
            "/exports",
            Some(("application/json", body.as_bytes())),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(*field)),
            "{what}: {answer}"
        );
    }
    let forms = [
        ("a form", "/exports", "dataset=supplier_shipments&params.suppliers=8&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.suppliers"),
        ("a form, twice", "/exports", "dataset=supplier_shipments&params.suppliers=7&params.suppliers=8&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.suppliers"),
        ("a form, another case", "/exports", "dataset=supplier_shipments&params.sUppliers=8&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.sUppliers"),
        ("the dataset's route", "/datasets/supplier_shipments/exports", "params.suppliers=8&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.suppliers"),
        ("an empty field", "/exports", "dataset=supplier_shipments&params.suppliers=&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.suppliers"),
        ("indexed", "/exports", "dataset=supplier_shipments&params.suppliers%5B0%5D=8&params.ship_from=1995-01-01&params.ship_to=1995-12-31", "params.suppliers[0]"),
    ];
    for (what, path, body, field) in forms {
        let (status, answer) = call(
            &stack.bob,
            Method::POST,
            path,
            Some((FORM, body.as_bytes())),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{what}: {answer}"
        );
    }
    let own = format!(r#"{{"params": {{"suppliers": [8], {range}}}}}"#);
    let (status, answer) = call(
        &stack.bob,
        Method::POST,
        "/datasets/supplier_shipments/exports",
        Some(("application/json", own.as_bytes())),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("bound_parameter")),
        "{answer}"
    );
    for query in [
        "suppliers=8",
        "suppliers=7&suppliers=8",
        "Suppliers=8",
        "suppliers=8,9",
        "suppliers=",
        "suppliers%5B0%5D=8",
        "+suppliers=8",
    ] {
        for path in [
            "/lookups/supplier_shipments",
            "/datasets/supplier_shipments/lookup",
        ] {
            let path = format!("{path}?ship_from=1995-01-01&ship_to=1995-12-31&{query}");
            let (status, answer) = call(&stack.bob, Method::GET, &path, None).await;
            assert_eq!(status, 400, "{path}: {answer}");
            assert_eq!(
                answer["error"]["code"], "bound_parameter",
                "{path}: {answer}"
            );
        }
    }
    assert_eq!(recorded(&stack).await, before, "a refusal recorded a job");
    stack.stack.stop().await;
}

#[tokio::test]
async fn a_partner_exports_and_looks_up_only_his_own_rows() {
    let stack = start().await;
    let request = json!({
        "dataset": "supplier_shipments",
        "params": {"ship_from": "1995-01-01", "ship_to": "1995-12-31"},
        "archive": "zip",
    });
    let id = submit_ok(&stack.bob, request.clone()).await;
    let job = wait_done(&stack.bob, &id).await;
    assert_eq!(job.summary.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.summary.archive, Archive::Zip);
    // The job shows its owner the value it ran with, and that it was bound.
    assert_eq!(job.params["suppliers"], json!([7]));
    assert_eq!(job.bound, ["suppliers"]);
    let link = stack.bob.download_link(&id).await.unwrap();
    let files = export_client::unpack::unpack(&stack.bob.fetch(&link).await.unwrap()).unwrap();
    let mut exported = Vec::new();
    for file in &files {
        let text = String::from_utf8(file.contents.clone()).unwrap();
        exported.extend(text.lines().skip(1).map(str::to_owned));
    }
    assert!(!exported.is_empty(), "supplier 7 shipped nothing in 1995");
    let suppliers: BTreeSet<&str> = exported
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(suppliers, BTreeSet::from(["7"]));
    // The same rows as a lookup, through both lookup routes.
    for answer in [
        stack
            .bob
            .lookup("supplier_shipments", &ONE_YEAR)
            .await
            .unwrap(),
        stack
            .bob
            .send(
                Method::GET,
                "/datasets/supplier_shipments/lookup?ship_from=1995-01-01&ship_to=1995-12-31",
                None,
                &[],
            )
            .await
            .unwrap()
            .read()
            .unwrap(),
    ] {
        assert_eq!(answer.row_count, exported.len());
        assert!(
            answer.rows.iter().all(|r| r["l_suppkey"] == json!(7)),
            "{answer:?}"
        );
    }
    // Alice's value is hers: suppliers 1 to 3.
    let hers = stack
        .alice
        .lookup("supplier_shipments", &ONE_YEAR)
        .await
        .unwrap();
    let keys: BTreeSet<i64> = hers
        .rows
        .iter()
        .map(|r| r["l_suppkey"].as_i64().unwrap())
        .collect();
    assert_eq!(keys, BTreeSet::from([1, 2, 3]));
    stack.stack.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_reused_with_other_values_is_a_conflict() {
    let stack = start().await;
    let first = json!({"dataset": "supplier_shipments", "params": {"ship_from": "1995-01-01", "ship_to": "1995-12-31"}});
    let accepted = stack.bob.submit(&first, Some("bob-1")).await.unwrap();
    let again = stack.bob.submit(&first, Some("bob-1")).await.unwrap();
    assert_eq!(again.request_id, accepted.request_id);
    let other = json!({"dataset": "supplier_shipments", "params": {"ship_from": "1996-01-01", "ship_to": "1996-12-31"}});
    let refused = stack.bob.submit(&other, Some("bob-1")).await.unwrap_err();
    let refused = refused.downcast_ref::<export_client::Refused>().unwrap();
    assert_eq!(
        (refused.status.as_u16(), refused.error.code.as_str()),
        (409, "idempotency_key_reused")
    );
    stack.stack.stop().await;
}

#[tokio::test]
async fn two_partners_asking_alike_are_never_served_each_others_answer_and_one_without_a_key_is_forbidden(
) {
    let dir = tempfile::tempdir().unwrap();
    let sql = sql_dir_with(&[], &[]);
    let mut policy = std::fs::read_to_string(sql.path().join("access.toml")).unwrap();
    policy.push_str(
        "\n[[caller]]\nowner = \"arn:aws:iam::000000000000:user/carol\"\ngroups = [\"suppliers\"]\nattributes = { supplier = \"9\" }\n\
         \n[[caller]]\nowner = \"arn:aws:iam::000000000000:user/dave\"\ngroups = [\"suppliers\"]\n",
    );
    std::fs::write(sql.path().join("access.toml"), policy).unwrap();
    let mut config = config(&dir);
    config.sql = SqlSource::Dir(sql.path().to_owned());
    config.identities.push(LocalIdentity::new(
        "LOCALCAROL",
        "local-carol-secret",
        "arn:aws:iam::000000000000:user/carol",
    ));
    config.identities.push(LocalIdentity::new(
        "LOCALDAVE",
        "local-dave-secret",
        "arn:aws:iam::000000000000:user/dave",
    ));
    let stack = start_with(dir, config).await;
    let carol = stack.bob.with_signer(export_client::Signer::with_keys(
        "LOCALCAROL",
        "local-carol-secret",
        export_local::sigv4::REGION,
    ));
    let his = stack
        .bob
        .lookup("supplier_shipments", &ONE_YEAR)
        .await
        .unwrap();
    let hers = carol.lookup("supplier_shipments", &ONE_YEAR).await.unwrap();
    assert!(
        !hers.cached,
        "carol was served a cached answer to bob's question"
    );
    assert!(his.rows.iter().all(|r| r["l_suppkey"] == json!(7)));
    assert!(!hers.rows.is_empty() && hers.rows.iter().all(|r| r["l_suppkey"] == json!(9)));
    // Each is served from the cache after, each their own.
    let his_again = stack
        .bob
        .lookup("supplier_shipments", &ONE_YEAR)
        .await
        .unwrap();
    let hers_again = carol.lookup("supplier_shipments", &ONE_YEAR).await.unwrap();
    assert!(his_again.cached && hers_again.cached);
    assert_eq!((his_again.rows, hers_again.rows), (his.rows, hers.rows));
    // Dave is a supplier's partner without a supplier key: granted the dataset, he cannot use it.
    let dave = stack.bob.with_signer(export_client::Signer::with_keys(
        "LOCALDAVE",
        "local-dave-secret",
        export_local::sigv4::REGION,
    ));
    for refused in [
        dave.lookup("supplier_shipments", &ONE_YEAR).await.unwrap_err(),
        dave.submit(
            &json!({"dataset": "supplier_shipments", "params": {"ship_from": "1995-01-01", "ship_to": "1995-12-31"}}),
            None,
        )
        .await
        .unwrap_err(),
    ] {
        let refused = refused.downcast_ref::<export_client::Refused>().unwrap();
        assert_eq!(refused.status.as_u16(), 403, "{refused}");
        assert!(refused.error.message.contains("'supplier'"), "{refused}");
    }
    stack.stack.stop().await;
}

#[tokio::test]
async fn the_original_samples_routes_hide_a_dataset_as_the_others_do() {
    // A deployment where the original sample's dataset is internal too.
    let shipped = std::fs::read_to_string(repo().join("sql/catalog/product_detail.sql")).unwrap();
    let internal = shipped.replacen("-- lookup:", "-- allow: internal\n-- lookup:", 1);
    let sql = sql_dir_with(&[("product_detail", &internal)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sql = SqlSource::Dir(sql.path().to_owned());
    let stack = start_with(dir, config).await;
    let body = json!({"sku": "FLOWER12"}).to_string();
    let (status, refused) = call(
        &stack.bob,
        Method::POST,
        "/product",
        Some(("application/json", body.as_bytes())),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "unknown_dataset");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("(available: supplier_shipments)"),
        "{refused}"
    );
    let (status, accepted) = call(
        &stack.alice,
        Method::POST,
        "/product",
        Some(("application/json", body.as_bytes())),
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    // Alice's job is hers: bob's `GET /product` for it is a 404 like any unknown id.
    let reply = stack
        .bob
        .send(
            Method::GET,
            "/product",
            None,
            &[
                ("requestid", accepted["RequestId"].as_str().unwrap()),
                ("type", "latest"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    let (status, _) = call(
        &stack.bob,
        Method::GET,
        "/lookups/product_detail?sku=FLOWER12",
        None,
    )
    .await;
    assert_eq!(status, 404);
    stack.stack.stop().await;
}
