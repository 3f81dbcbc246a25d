//! Who sees what, for each kind of caller API Gateway's IAM authorisation lets in: IAM users,
//! role sessions (whose names tools rotate), and the users of a Cognito identity pool (who all
//! arrive through one role session ARN).

use super::{identity_of, sample_event, Harness};
use export_core::identity::RoleOwner;
use serde_json::{json, Value};

const ROLE_SESSION: &str = "status-list-exports-assumed-role.json";
const COGNITO_USER: &str = "status-list-exports-cognito.json";

fn export() -> Value {
    json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}})
}

/// The same role, as the AWS CLI names a later session of it.
fn later_session(identity: &Value) -> Value {
    let rename = |v: &Value| {
        Value::String(
            v.as_str()
                .unwrap()
                .replace("botocore-session-1795348000", "botocore-session-1795351600"),
        )
    };
    let mut later = identity.clone();
    for field in ["userArn", "caller", "user"] {
        later[field] = rename(&identity[field]);
    }
    later
}

/// Another user of the same identity pool: same role, same session ARN, another identity.
fn other_pool_user(identity: &Value) -> Value {
    let mut other = identity.clone();
    other["cognitoIdentityId"] = "us-east-1:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into();
    other
}

async fn submitted(h: &Harness, identity: &Value) -> String {
    let reply = h.submit_as(identity, &export()).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["request_id"].as_str().unwrap().to_owned()
}

/// The request ids `identity` sees in its list of jobs.
async fn listed(h: &Harness, identity: &Value) -> Vec<String> {
    let reply = h.status_as("status-list-exports.json", "", identity).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["request_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn status_code(h: &Harness, request_id: &str, identity: &Value) -> u16 {
    h.status_as("status-get-export.json", request_id, identity)
        .await
        .status
}

#[tokio::test]
async fn by_default_each_role_session_and_each_pool_user_sees_only_its_own_jobs() {
    let h = Harness::start().await;
    assert_eq!(h.role_owner, RoleOwner::Session);
    let session = identity_of(ROLE_SESSION);
    let pool_user = identity_of(COGNITO_USER);
    let by_session = submitted(&h, &session).await;
    let by_pool_user = submitted(&h, &pool_user).await;

    assert_eq!(
        listed(&h, &session).await,
        std::slice::from_ref(&by_session)
    );
    assert_eq!(status_code(&h, &by_session, &session).await, 200);
    assert!(listed(&h, &later_session(&session)).await.is_empty());
    assert_eq!(
        status_code(&h, &by_session, &later_session(&session)).await,
        404
    );

    assert_eq!(
        listed(&h, &pool_user).await,
        std::slice::from_ref(&by_pool_user)
    );
    let other = other_pool_user(&pool_user);
    assert!(
        listed(&h, &other).await.is_empty(),
        "one pool user sees another's job"
    );
    assert_eq!(status_code(&h, &by_pool_user, &other).await, 404);
    let download = h
        .status_as("status-get-export-download.json", &by_pool_user, &other)
        .await;
    assert_eq!(download.status, 404, "{}", download.body);
}

#[tokio::test]
async fn owned_by_role_every_session_of_it_shares_jobs_and_idempotency_keys() {
    let mut h = Harness::start().await;
    h.role_owner = RoleOwner::Role;
    let session = identity_of(ROLE_SESSION);
    let later = later_session(&session);
    // The sample carries an Idempotency-Key: the later session's retry finds the same job.
    let mut post = sample_event("receiver-post-exports.json", "");
    post["requestContext"]["identity"] = session.clone();
    let first = h.call(&h.receiver, &post).await;
    assert_eq!(first.status, 202, "{}", first.body);
    post["requestContext"]["identity"] = later.clone();
    let retried = h.call(&h.receiver, &post).await;
    assert_eq!(retried.body["request_id"], first.body["request_id"]);

    let request_id = first.body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(listed(&h, &later).await, std::slice::from_ref(&request_id));
    assert_eq!(status_code(&h, &request_id, &later).await, 200);
    // Pool users stay apart whatever the rule for roles.
    let pool_user = identity_of(COGNITO_USER);
    let by_pool_user = submitted(&h, &pool_user).await;
    assert!(listed(&h, &other_pool_user(&pool_user)).await.is_empty());
    assert_eq!(listed(&h, &pool_user).await, [by_pool_user]);
}

#[tokio::test]
async fn a_pool_role_session_without_its_cognito_identity_is_refused() {
    let h = Harness::start().await;
    let mut anonymous_pool_user = identity_of(COGNITO_USER);
    anonymous_pool_user["cognitoIdentityId"] = Value::Null;
    let reply = h
        .status_as("status-list-exports.json", "", &anonymous_pool_user)
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "forbidden");
}
