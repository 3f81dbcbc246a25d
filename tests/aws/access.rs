//! Partner access through the functions on the emulated AWS, with a partner's groups and
//! attributes read from its IAM user's tags (`AccessFromIamTags`): the functions are built as
//! their mains build them, from the emulator's variables and `ACCESS_TAGS_ACCOUNT`.

use super::{iam_user, sample_event, Harness, Reply};
use aws_sdk_iam::types::Tag;
use axum::Router;
use export_api::{Accepted, Datasets, LookupAnswer};
use export_aws::env::Env;
use export_aws::functions;
use export_core::http::{lookup_router, receiver_router, status_router, with_json_fallbacks};
use serde_json::{json, Value};

/// The emulator's account: moto's default.
const ACCOUNT: &str = "123456789012";

/// A user of the account with `tags`, under a name of its own (moto is shared by the tests).
async fn tagged_user(h: &Harness, tags: &[(&str, &str)]) -> String {
    let name = format!("tagged-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut create = h.emulator.clients.iam.create_user().user_name(&name);
    for (key, value) in tags {
        create = create.tags(Tag::builder().key(*key).value(*value).build().unwrap());
    }
    let user = create.send().await.unwrap();
    user.user().unwrap().arn().to_owned()
}

/// The receiver and the status function (with lookups), reading callers' tags or not.
fn functions_reading_tags(h: &Harness, tags: bool) -> (Router, Router) {
    let mut variables = h.emulator.function_variables();
    if tags {
        variables.insert("ACCESS_TAGS_ACCOUNT".into(), ACCOUNT.into());
    }
    let mut env = Env::from_pairs(variables);
    let clients = &h.emulator.clients;
    let receiver = with_json_fallbacks(receiver_router(functions::receiver(&mut env, clients)));
    let status = with_json_fallbacks({
        let queries = functions::status(&mut env, clients);
        let lookups = functions::lookups(&mut env, clients, queries.access.clone());
        status_router(queries).merge(lookup_router(lookups))
    });
    env.finish().unwrap();
    (receiver, status)
}

async fn datasets(h: &Harness, status: &Router, caller: &str) -> Vec<String> {
    let mut event = sample_event("status-get-datasets.json", "");
    event["requestContext"]["identity"] = iam_user(caller);
    let reply = h.call(status, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .read::<Datasets>()
        .datasets
        .into_iter()
        .map(|d| d.name)
        .collect()
}

async fn submit(h: &Harness, receiver: &Router, caller: &str, body: &Value) -> Reply {
    let mut event = sample_event("receiver-post-dataset-exports.json", "");
    event["body"] = Value::String(body.to_string());
    for headers in ["headers", "multiValueHeaders"] {
        event[headers]
            .as_object_mut()
            .unwrap()
            .remove("Idempotency-Key");
    }
    event["requestContext"]["identity"] = iam_user(caller);
    h.call(receiver, &event).await
}

#[tokio::test]
async fn a_partners_iam_tags_grant_its_datasets_and_bind_its_values() {
    let h = Harness::start().await;
    let partner = tagged_user(
        &h,
        &[
            ("export:groups", "suppliers"),
            ("export:supplier", "7 9"),
            ("team", "logistics"),
        ],
    )
    .await;
    let untagged = tagged_user(&h, &[("team", "logistics")]).await;
    let (receiver, status) = functions_reading_tags(&h, true);

    assert_eq!(
        datasets(&h, &status, &partner).await,
        ["product_detail", "supplier_shipments"]
    );
    // No tags, no policy entry: what every caller may use, no more; another account's user of
    // the same name likewise.
    assert_eq!(datasets(&h, &status, &untagged).await, ["product_detail"]);
    let foreign = partner.replace(ACCOUNT, "210987654321");
    assert_eq!(datasets(&h, &status, &foreign).await, ["product_detail"]);
    // Functions that do not read tags give the partner no more either.
    let (_, without) = functions_reading_tags(&h, false);
    assert_eq!(datasets(&h, &without, &partner).await, ["product_detail"]);

    // Its export runs with its own suppliers, whatever it says.
    let range = json!({"params": {"ship_from": "1995-01-01", "ship_to": "1995-12-31"}});
    let accepted = submit(&h, &receiver, &partner, &range).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let job = h.job(&accepted.read::<Accepted>().request_id).await;
    assert_eq!(job.params["suppliers"], json!([7, 9]));
    assert_eq!(job.bound, ["suppliers"]);
    for smuggled in [
        json!({"params": {"suppliers": [8], "ship_from": "1995-01-01", "ship_to": "1995-12-31"}}),
        json!({"params": {"SUPPLIERS": [8], "ship_from": "1995-01-01", "ship_to": "1995-12-31"}}),
    ] {
        let refused = submit(&h, &receiver, &partner, &smuggled).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "bound_parameter");
    }
    let hidden = submit(&h, &receiver, &untagged, &range).await;
    assert_eq!(
        (hidden.status, &hidden.body["error"]["code"]),
        (400, &json!("unknown_dataset"))
    );

    // Its lookup, through the Data API, reads its suppliers' rows only.
    let mut event = sample_event("status-get-dataset-lookup.json", "");
    event["requestContext"]["identity"] = iam_user(&partner);
    let reply = h.call(&status, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer: LookupAnswer = reply.read();
    assert!(answer.row_count > 0);
    assert!(
        answer
            .rows
            .iter()
            .all(|r| r["l_suppkey"] == json!(7) || r["l_suppkey"] == json!(9)),
        "{:?}",
        answer.rows
    );
}
