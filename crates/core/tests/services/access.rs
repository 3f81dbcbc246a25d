//! Partner access over the fakes: for random policies and random requests (bound values
//! smuggled in every spelling, as JSON and as text), no job, no statement a lookup runs and no
//! answer a cache serves ever carries a bound value other than the caller's, and a dataset
//! outside the caller's groups answers as one that does not exist.

use export_core::access::{Access, AccessPolicy};
use export_core::catalog::Catalog;
use export_core::domain::Owner;
use export_core::ports::{ResultColumn, ResultSet, SelectOutcome};
use export_core::service::{ExportRequest, LookupSettings, Lookups, Submissions};
use export_core::testing::{World, INTERNAL_THINGS, SUPPLIER_THINGS, THINGS};
use http::StatusCode;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// One partner of a generated policy: its groups and its supplier values (none, one, several).
#[derive(Clone, Debug)]
struct Partner {
    supplier: bool,
    internal: bool,
    values: Vec<u16>,
}

fn partners() -> impl Strategy<Value = Vec<Partner>> {
    prop::collection::vec(
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(0u16..40, 0..3),
        )
            .prop_map(|(supplier, internal, values)| Partner {
                supplier,
                internal,
                values,
            }),
        1..5,
    )
}

fn policy(partners: &[Partner]) -> String {
    let mut text = String::new();
    for (i, p) in partners.iter().enumerate() {
        let mut groups = Vec::new();
        if p.supplier {
            groups.push("\"suppliers\"");
        }
        if p.internal {
            groups.push("\"internal\"");
        }
        let values: Vec<String> = p.values.iter().map(|v| format!("\"{v}\"")).collect();
        text.push_str(&format!(
            "[[caller]]\nowner = \"partner-{i}\"\ngroups = [{}]\nattributes = {{ {} }}\n\n",
            groups.join(", "),
            if values.is_empty() {
                String::new()
            } else {
                format!("supplier = [{}]", values.join(", "))
            }
        ));
    }
    text
}

/// How a request tries to name the supplier itself.
#[derive(Clone, Debug)]
enum Smuggle {
    None,
    /// `supplier`, `Supplier`, `SUPPLIER`: as a JSON key or a text pair.
    Named(&'static str, u16),
    /// The text pair given twice.
    Twice(u16, u16),
}

fn smuggles() -> impl Strategy<Value = Smuggle> {
    prop_oneof![
        Just(Smuggle::None),
        (
            prop::sample::select(vec!["supplier", "Supplier", "SUPPLIER"]),
            0u16..40
        )
            .prop_map(|(n, v)| Smuggle::Named(n, v)),
        (0u16..40, 0u16..40).prop_map(|(a, b)| Smuggle::Twice(a, b)),
    ]
}

#[derive(Clone, Debug)]
struct Request {
    partner: usize,
    dataset: &'static str,
    id: u8,
    smuggle: Smuggle,
    as_text: bool,
    lookup: bool,
}

fn requests() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(
        (
            0usize..5,
            prop::sample::select(vec!["things", "supplier_things", "internal_things"]),
            0u8..3,
            smuggles(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(partner, dataset, id, smuggle, as_text, lookup)| Request {
                partner,
                dataset,
                id,
                smuggle,
                as_text,
                lookup,
            }),
        1..12,
    )
}

/// Each SELECT answers one row of its own parameters' values, so an answer says which values
/// its statement ran with, wherever it is served from.
fn echo_parameters(world: &World) {
    world.warehouse.answer_selects(|select| {
        SelectOutcome::Rows(ResultSet {
            columns: select
                .params
                .iter()
                .map(|p| ResultColumn {
                    name: p.name.clone(),
                    type_name: "varchar".into(),
                })
                .collect(),
            rows: vec![select
                .params
                .iter()
                .map(|p| Value::String(p.value.clone()))
                .collect()],
        })
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_statement_runs_with_a_bound_value_other_than_the_callers(
        partners in partners(),
        requests in requests(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check(partners, requests));
    }
}

async fn check(partners: Vec<Partner>, requests: Vec<Request>) {
    let world = World::new();
    echo_parameters(&world);
    let catalog = Arc::new(
        Catalog::from_sources([
            ("things.sql", THINGS),
            ("supplier_things.sql", SUPPLIER_THINGS),
            ("internal_things.sql", INTERNAL_THINGS),
        ])
        .unwrap(),
    );
    let access = Arc::new(Access::new(
        catalog,
        AccessPolicy::parse(&policy(&partners)).unwrap(),
        None,
    ));
    let submissions = Submissions {
        access: access.clone(),
        control: world.control.clone(),
        queue: world.queue.clone(),
        warehouse: world.warehouse.clone(),
        clock: world.clock.clone(),
        admission: world.submissions.admission.clone(),
        quotas: world.submissions.quotas.clone(),
        audit: world.submissions.audit.clone(),
        webhooks: world.submissions.webhooks,
        finished: None,
    };
    // Two instances share one answer cache, as two functions share the control table.
    let instances: Vec<Lookups> = (0..2)
        .map(|_| {
            Lookups::new(
                access.clone(),
                world.warehouse.clone(),
                world.control.clone(),
                world.clock.clone(),
                LookupSettings::default(),
            )
        })
        .collect();
    for (n, request) in requests.iter().enumerate() {
        let owner = Owner(format!("partner-{}", request.partner));
        let partner = partners.get(request.partner);
        let allowed = match request.dataset {
            "things" => true,
            "supplier_things" => partner.is_some_and(|p| p.supplier || p.internal),
            _ => partner.is_some_and(|p| p.internal),
        };
        let bound = request.dataset == "supplier_things";
        let own: Vec<String> = partner
            .map(|p| {
                let mut values: Vec<String> = Vec::new();
                for v in &p.values {
                    if !values.contains(&v.to_string()) {
                        values.push(v.to_string());
                    }
                }
                values
            })
            .unwrap_or_default();

        let mut json_params = Map::new();
        json_params.insert("id".into(), json!(request.id));
        let mut text: Vec<(String, String)> = vec![("id".into(), request.id.to_string())];
        match &request.smuggle {
            Smuggle::None => {}
            Smuggle::Named(name, v) => {
                json_params.insert((*name).into(), json!(v));
                text.push(((*name).into(), v.to_string()));
            }
            Smuggle::Twice(a, b) => {
                json_params.insert("supplier".into(), json!(a));
                text.push(("supplier".into(), a.to_string()));
                text.push(("supplier".into(), b.to_string()));
            }
        }
        let selects_before = world.warehouse.selects().len();
        let outcome = if request.lookup {
            let lookups = &instances[n % 2];
            let looked = if request.as_text {
                let pairs = text
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())));
                lookups
                    .lookup_text(&owner, request.dataset, pairs, false)
                    .await
            } else {
                lookups
                    .lookup(&owner, request.dataset, &json_params, false)
                    .await
            };
            looked.map(|looked| {
                // The answer, from the warehouse or a cache, is of the caller's own value.
                if bound {
                    let row = &looked.answer.rows[0];
                    assert_eq!(own.len(), 1, "{request:?}");
                    assert_eq!(
                        row[0],
                        json!(own[0]),
                        "{request:?}: served another's answer"
                    );
                }
            })
        } else {
            let submitted = if request.as_text {
                submissions
                    .submit_text(
                        &owner,
                        ExportRequest::new(request.dataset, Map::new()),
                        text.clone(),
                        None,
                    )
                    .await
            } else {
                submissions
                    .submit(
                        &owner,
                        ExportRequest::new(request.dataset, json_params.clone()),
                        None,
                    )
                    .await
            };
            match submitted {
                Ok(submitted) => {
                    let job = world.job(&submitted.request_id).await;
                    if bound {
                        assert_eq!(
                            job.params["supplier"],
                            json!(own[0].parse::<i64>().unwrap()),
                            "{request:?}"
                        );
                        assert_eq!(job.bound, ["supplier"]);
                    } else {
                        assert!(job.params.get("supplier").is_none());
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        // Every statement a lookup ran used the caller's value.
        for select in &world.warehouse.selects()[selects_before..] {
            if bound {
                assert_eq!(select.params[0].value, own[0], "{request:?}");
            }
        }
        let smuggled = !matches!(request.smuggle, Smuggle::None);
        match outcome {
            Ok(()) => {
                assert!(
                    allowed,
                    "{request:?} went through for a caller outside the dataset's groups"
                );
                assert!(
                    !(bound && smuggled),
                    "{request:?}: a bound value was accepted from the request"
                );
                assert!(!bound || own.len() == 1, "{request:?}");
            }
            Err(e) if !allowed => {
                assert_eq!(e.code, "unknown_dataset", "{request:?}: {e}");
                // It lists only what the caller may use.
                let listed = e.message.split("(available: ").nth(1).unwrap_or_default();
                let mut visible = vec!["things"];
                if partner.is_some_and(|p| p.supplier || p.internal) {
                    visible.insert(0, "supplier_things");
                }
                if partner.is_some_and(|p| p.internal) {
                    visible.insert(0, "internal_things");
                }
                assert_eq!(
                    listed,
                    format!("{})", visible.join(", ")),
                    "{request:?}: {e}"
                );
            }
            Err(e) if bound && smuggled => {
                assert_eq!(
                    (e.status, e.code),
                    (StatusCode::BAD_REQUEST, "bound_parameter"),
                    "{request:?}: {e}"
                );
            }
            Err(e) if bound => {
                assert_eq!(e.status, StatusCode::FORBIDDEN, "{request:?}: {e}");
                assert_ne!(own.len(), 1, "{request:?}: {e}");
            }
            // Outside a bound dataset, a `supplier` is an unknown parameter like any other.
            Err(e) => {
                assert!(smuggled, "{request:?}: {e}");
                assert_eq!(e.status, StatusCode::BAD_REQUEST, "{request:?}: {e}");
            }
        }
    }
}
