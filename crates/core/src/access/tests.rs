use super::*;
use serde_json::json;

const CATALOG: [(&str, &str); 3] = [
    (
        "open.sql",
        "-- export: open\n-- param: id integer\nSELECT 1 FROM t WHERE id = :id",
    ),
    (
        "internal.sql",
        "-- export: internal\n-- allow: internal\n-- param: id integer\nSELECT 1 FROM t WHERE id = :id",
    ),
    (
        "shipments.sql",
        "-- export: shipments\n-- allow: internal, suppliers\n\
         -- param: supplier integer bound=supplier\n-- param: regions list<text> bound=region\n\
         -- param: day date optional\n\
         SELECT 1 FROM t WHERE s = :supplier AND r IN (:regions) AND (:day IS NULL OR d = :day)",
    ),
];

const POLICY: &str = r#"
[[caller]]
owner = "arn:aws:iam::1:user/alice"
groups = ["internal"]
attributes = { supplier = "1", region = ["EU", "UK"] }

[[caller]]
owner = "arn:aws:iam::1:user/bob"
groups = ["suppliers"]
attributes = { supplier = "7", region = "EU" }

[[caller]]
owner = "arn:aws:iam::1:user/carol"
groups = ["suppliers"]
attributes = { supplier = ["8", "9"] }

[[caller]]
owner = "arn:aws:iam::1:user/frank"
groups = ["suppliers"]
attributes = { supplier = "5" }

[[caller]]
owner = "arn:aws:iam::1:user/dave"
groups = ["suppliers"]
attributes = { supplier = "not-a-number", region = "EU" }
"#;

fn access() -> Access {
    Access::new(
        Arc::new(Catalog::from_sources(CATALOG).unwrap()),
        AccessPolicy::parse(POLICY).unwrap(),
        None,
    )
}

async fn principal(access: &Access, user: &str) -> Principal {
    access
        .principal(&Owner(format!("arn:aws:iam::1:user/{user}")))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_caller_sees_only_the_datasets_its_groups_allow() {
    let access = access();
    let names =
        |p: &Principal| -> Vec<String> { access.datasets(p).map(|e| e.name.clone()).collect() };
    let alice = principal(&access, "alice").await;
    let bob = principal(&access, "bob").await;
    let stranger = principal(&access, "eve").await;
    assert_eq!(names(&alice), ["internal", "open", "shipments"]);
    assert_eq!(names(&bob), ["open", "shipments"]);
    assert_eq!(names(&stranger), ["open"]);
    assert!(access.dataset(&bob, "internal").is_none());
    // Hidden and missing read alike.
    let hidden = access.unknown_dataset(&bob, "internal", StatusCode::NOT_FOUND);
    let missing = access.unknown_dataset(&bob, "nothing", StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.message,
        "no dataset named 'internal' (available: open, shipments)"
    );
    assert_eq!(
        missing.message,
        "no dataset named 'nothing' (available: open, shipments)"
    );
    assert_eq!((hidden.status, hidden.code), (missing.status, missing.code));
}

#[tokio::test]
async fn bound_values_are_the_callers_and_never_the_requests() {
    let access = access();
    let bob = principal(&access, "bob").await;
    let export = access.dataset(&bob, "shipments").unwrap();
    let params = access.bind(&bob, export, &Map::new()).unwrap().values;
    assert_eq!(
        Value::Object(params),
        json!({"supplier": 7, "regions": ["EU"]})
    );
    for given in [
        json!({"supplier": 7}),
        json!({"supplier": 8}),
        json!({"Supplier": 8}),
        json!({"SUPPLIER": null}),
        json!({"regions": ["UK"]}),
        json!({"day": "2024-01-01", "Regions": []}),
        // Spellings that name it all the same: indexed, padded, with a control character.
        json!({"supplier[0]": 8}),
        json!({" supplier ": 8}),
        json!({"supplier\u{0}": 8}),
        json!({"supplier.x": 8}),
    ] {
        let Value::Object(given) = given else {
            unreachable!()
        };
        let e = access.bind(&bob, export, &given).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{given:?}");
        assert_eq!(e.code, "bound_parameter");
        let field = e.field.unwrap();
        assert!(
            given.keys().any(|k| field == format!("params.{k}")),
            "{field}"
        );
    }
    // The request's own parameters are checked as ever.
    let Value::Object(bad_day) = json!({"day": "someday"}) else {
        unreachable!()
    };
    let e = access.bind(&bob, export, &bad_day).unwrap_err();
    assert_eq!(
        (e.status, e.field.as_deref()),
        (StatusCode::BAD_REQUEST, Some("params.day"))
    );
}

#[tokio::test]
async fn a_caller_without_a_usable_value_is_forbidden() {
    let access = access();
    for (user, why) in [
        // No `region` attribute at all.
        ("frank", "does not have"),
        // Not an integer: nothing the caller sends can mend it.
        ("dave", "does not fit"),
    ] {
        let caller = principal(&access, user).await;
        let export = access.dataset(&caller, "shipments").unwrap();
        let e = access.bind(&caller, export, &Map::new()).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN, "{user}: {e}");
        assert!(e.message.contains(why), "{user}: {e}");
    }
}

#[tokio::test]
async fn several_values_bind_a_list_but_not_a_single_value() {
    let catalog = Catalog::from_sources([(
        "mine.sql",
        "-- export: mine\n-- param: suppliers list<integer> bound=supplier\n\
         SELECT 1 FROM t WHERE s IN (:suppliers)",
    )])
    .unwrap();
    let access = Access::new(
        Arc::new(catalog),
        AccessPolicy::parse(POLICY).unwrap(),
        None,
    );
    let carol = principal(&access, "carol").await;
    let export = access.dataset(&carol, "mine").unwrap();
    let params = access.bind(&carol, export, &Map::new()).unwrap().values;
    assert_eq!(params["suppliers"], json!([8, 9]));
    // A scalar bound to carol's two suppliers: which one would be a guess.
    let access = self::access();
    let carol = principal(&access, "carol").await;
    let mut grants = carol.grants.clone();
    grants.attributes.insert("region".into(), vec!["EU".into()]);
    let carol = Principal { grants, ..carol };
    let export = access.dataset(&carol, "shipments").unwrap();
    let e = access.bind(&carol, export, &Map::new()).unwrap_err();
    assert_eq!(e.status, StatusCode::FORBIDDEN);
    assert!(e.message.contains("has 2 values"), "{e}");
}

#[tokio::test]
async fn the_catalogue_shows_each_caller_its_own_bound_values() {
    let access = access();
    for (user, supplier, regions) in [("alice", 1, json!(["EU", "UK"])), ("bob", 7, json!(["EU"]))]
    {
        let caller = principal(&access, user).await;
        let described = access.describe(&caller, access.dataset(&caller, "shipments").unwrap());
        let supplier_param = &described.params[0];
        assert_eq!(supplier_param.bound.as_deref(), Some("supplier"));
        assert_eq!(supplier_param.value, Some(json!(supplier)));
        assert_eq!(described.params[1].value, Some(regions));
        assert_eq!(described.params[2].bound, None);
    }
}

struct Tags(Grants);

#[async_trait]
impl AttributeSource for Tags {
    async fn grants(&self, owner: &Owner) -> PortResult<Grants> {
        Ok(if owner.0.ends_with("/tagged") {
            self.0.clone()
        } else {
            Grants::default()
        })
    }
}

#[tokio::test]
async fn an_attribute_source_adds_to_the_policy() {
    let mut tagged = Grants::default();
    tagged.add(
        &["suppliers".into()],
        &BTreeMap::from([
            ("supplier".into(), vec!["11".into()]),
            ("region".into(), vec!["EU".into()]),
        ]),
    );
    let access = Access::new(
        Arc::new(Catalog::from_sources(CATALOG).unwrap()),
        AccessPolicy::parse(POLICY).unwrap(),
        Some(Arc::new(Tags(tagged))),
    );
    let caller = principal(&access, "tagged").await;
    let export = access.dataset(&caller, "shipments").unwrap();
    assert_eq!(
        access.bind(&caller, export, &Map::new()).unwrap().values["supplier"],
        json!(11)
    );
    assert!(access
        .dataset(&principal(&access, "eve").await, "shipments")
        .is_none());
}
