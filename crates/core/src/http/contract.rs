//! The API's contract: an OpenAPI 3.1 document generated from the routers' annotated
//! handlers and the view types they answer with (`views`). The status routes serve it at
//! `GET /openapi.json`; `docs/openapi.json` is a copy a test keeps equal to it.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi};

/// The security scheme every operation requires.
pub const SIGV4_SCHEME: &str = "sigv4";

/// The answers any operation can give besides its own: a request that is not signed, or
/// not by an identity allowed to call it (the local gateway, or API Gateway's IAM
/// authorisation with the template's gateway responses), and a failure of the service or
/// of a dependency it needs.
const COMMON_RESPONSES: [(&str, &str); 3] = [
    (
        "403",
        "The request is not signed with AWS SigV4 (service `execute-api`), its signature does not match, or the signer may not call the API.",
    ),
    (
        "500",
        "The service failed in a way retrying will not mend; the details are in its log.",
    ),
    (
        "503",
        "A dependency (the control table, the queue, the warehouse, the object store) is unavailable; retry later.",
    ),
];

/// The contract as a JSON value, built once.
pub fn contract() -> &'static Value {
    static CONTRACT: OnceLock<Value> = OnceLock::new();
    CONTRACT.get_or_init(|| finish(serde_json::to_value(generated()).expect("serializable")))
}

/// The contract as the text served and committed: pretty-printed, with a final newline.
pub fn contract_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(contract()).expect("serializable");
        text.push('\n');
        text
    })
}

/// Every operation `doc` (an OpenAPI document as JSON) describes, as (METHOD, path).
pub fn contract_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let Some(paths) = doc["paths"].as_object() else {
        return BTreeSet::new();
    };
    paths
        .iter()
        .filter_map(|(path, item)| Some((path, item.as_object()?)))
        .flat_map(|(path, item)| {
            item.keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// What the annotations of the three routers' handlers describe.
fn generated() -> OpenApi {
    let mut doc = super::receiver_routes().into_openapi();
    doc.merge(super::status_routes().into_openapi());
    doc.merge(super::lookup::lookup_routes().into_openapi());
    doc.merge(super::subscription_routes().into_openapi());
    doc.info = InfoBuilder::new()
        .title("Redshift Export API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Named, typed exports from Amazon Redshift as asynchronous jobs (submit, follow, \
             download, cancel), and small answers at once through lookups. Every request is \
             signed with AWS SigV4 for the service `execute-api`; a caller sees only its own \
             jobs. Times are milliseconds since the Unix epoch.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    doc
}

/// What the annotations cannot say: the SigV4 scheme (an `apiKey` scheme on the
/// `Authorization` header marked `awsSigv4`, as "x-amazon-apigateway-authtype property",
/// Amazon API Gateway Developer Guide, defines IAM authorization), that
/// every operation requires it, and the answers every operation can give.
fn finish(mut doc: Value) -> Value {
    doc["components"]["securitySchemes"][SIGV4_SCHEME] = json!({
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "AWS Signature Version 4 for the service `execute-api` in the API's region: the `Authorization` header with `X-Amz-Date` (and `X-Amz-Security-Token` for temporary credentials).",
        "x-amazon-apigateway-authtype": "awsSigv4",
    });
    doc["security"] = json!([{ SIGV4_SCHEME: [] }]);
    let error = json!({
        "application/json": { "schema": { "$ref": "#/components/schemas/Error" } }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in operation.values_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (status, description) in COMMON_RESPONSES {
                    responses.entry(status).or_insert_with(
                        || json!({ "description": description, "content": error.clone() }),
                    );
                }
                // Numeric order reads best, whatever order the annotations used.
                let mut sorted: Vec<_> = std::mem::take(responses).into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                responses.extend(sorted);
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is what the code generates. `OPENAPI_WRITE=1 cargo test -p
    /// export-core committed_contract` rewrites it after a change to the API.
    #[test]
    fn the_committed_contract_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("OPENAPI_WRITE").is_some() {
            std::fs::write(&path, contract_text()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == contract_text(),
            "{} is not what the code generates; run `OPENAPI_WRITE=1 cargo test -p export-core committed_contract` and commit it",
            path.display()
        );
    }

    #[test]
    fn every_operation_requires_sigv4_and_documents_the_common_answers() {
        let doc = contract();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["security"], json!([{ "sigv4": [] }]));
        let operations = contract_operations(doc);
        // Every route the routers serve, and no more.
        assert_eq!(operations.len(), 26, "{operations:?}");
        for (method, path) in operations {
            let operation = &doc["paths"][&path][method.to_lowercase()];
            for status in ["403", "500", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
}
