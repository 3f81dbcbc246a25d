use export_core::catalog::Export;
use export_core::domain::{Compression, Format, ObjectRef};
use export_core::sql::{render_unload, UnloadOptions};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sqlparser::ast::{Expr, Statement, Value as SqlValue, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

const CASES: u32 = 10_000;

/// Characters that matter to SQL lexers, mixed with anything at all.
fn nasty_string() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just("'".to_owned()),
        Just("''".to_owned()),
        Just("\\".to_owned()),
        Just("\\'".to_owned()),
        Just("--".to_owned()),
        Just("/*".to_owned()),
        Just("*/".to_owned()),
        Just(";".to_owned()),
        Just("\0".to_owned()),
        Just("\n".to_owned()),
        Just(":sku".to_owned()),
        Just("$$".to_owned()),
        Just("é".to_owned()),
        Just("日本".to_owned()),
        Just("\u{1F600}".to_owned()),
        Just(")".to_owned()),
    ];
    prop::collection::vec(
        prop_oneof![special, any::<char>().prop_map(String::from)],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// Replaces every string or NULL literal, in visiting order, by the next placeholder name,
/// and records the literals' values (`None` for NULL: an optional parameter left out).
struct LiteralsToPlaceholders {
    names: Vec<String>,
    values: Vec<Option<String>>,
}

impl VisitorMut for LiteralsToPlaceholders {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let literal = match expr {
            Expr::Value(ValueWithSpan {
                value: SqlValue::SingleQuotedString(s),
                ..
            }) => Some(Some(s.clone())),
            Expr::Value(ValueWithSpan {
                value: SqlValue::Null,
                ..
            }) => Some(None),
            _ => None,
        };
        if let Some(value) = literal {
            self.values.push(value);
            let name = self
                .names
                .get(self.values.len() - 1)
                .cloned()
                .unwrap_or_default();
            *expr = Expr::Value(SqlValue::Placeholder(format!(":{name}")).into());
        }
        ControlFlow::Continue(())
    }
}

fn parse_one(sql: &str) -> Statement {
    let mut statements =
        Parser::parse_sql(&RedshiftSqlDialect {}, sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    assert_eq!(statements.len(), 1, "{sql}");
    statements.remove(0)
}

/// Renders the export with `params`, wraps it in UNLOAD, and checks what Redshift would see:
/// the UNLOAD parses, its query text parses, and that query is the template with exactly one
/// literal per placeholder occurrence, carrying the original values.
fn check(
    export: &Export,
    params: &Map<String, Value>,
    placeholder_order: &[&str],
) -> Result<(), TestCaseError> {
    let select = match export.render(params) {
        Ok(select) => select,
        Err(e) => {
            // The one refusal allowed: a NUL, which Redshift text cannot hold.
            prop_assert!(
                params.values().any(|v| v.to_string().contains("\\u0000")),
                "unexpected refusal: {e}"
            );
            prop_assert!(e.message.contains("NUL"));
            return Ok(());
        }
    };
    let unload = render_unload(
        &select,
        &UnloadOptions {
            target: ObjectRef::new("results", "exports/p/"),
            iam_role: "arn:aws:iam::0:role/r".into(),
            format: Format::Csv,
            compression: Compression::Gzip,
            max_file_size_mb: 100,
            allow_overwrite: false,
            parallel: true,
        },
    );
    let Statement::Unload {
        query_text: Some(inner),
        ..
    } = parse_one(&unload)
    else {
        return Err(TestCaseError::fail(format!(
            "not an UNLOAD with query text: {unload}"
        )));
    };
    prop_assert_eq!(
        &inner,
        &select,
        "the outer quoting level must give back the SELECT exactly"
    );
    let mut rendered = parse_one(&inner);
    let mut visitor = LiteralsToPlaceholders {
        names: placeholder_order.iter().map(|s| s.to_string()).collect(),
        values: Vec::new(),
    };
    let _ = rendered.visit(&mut visitor);
    let template = parse_one(&export.template);
    prop_assert_eq!(rendered, template, "structure changed for {:?}", params);
    let expected: Vec<Option<String>> = placeholder_order
        .iter()
        .map(|name| params.get(*name).and_then(Value::as_str).map(str::to_owned))
        .collect();
    prop_assert_eq!(visitor.values, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn product_detail_sku_is_always_one_literal(sku in nasty_string().prop_filter("within the declared length", |s| s.chars().count() <= 20)) {
        let export = Export::parse(include_str!("../../../sql/catalog/product_detail.sql")).unwrap();
        // The optional parameters are left out, so they render as NULL.
        let order = ["sku", "product_name", "product_name", "created_on", "created_on"];
        check(&export, json!({"sku": sku}).as_object().unwrap(), &order)?;
    }

    #[test]
    fn product_detail_with_every_text_parameter(sku in nasty_string().prop_filter("within the declared length", |s| s.chars().count() <= 20), name in nasty_string()) {
        let export = Export::parse(include_str!("../../../sql/catalog/product_detail.sql")).unwrap();
        let order = ["sku", "product_name", "product_name", "created_on", "created_on"];
        check(&export, json!({"sku": sku, "product_name": name}).as_object().unwrap(), &order)?;
    }

    #[test]
    fn several_text_placeholders_in_several_contexts(a in nasty_string(), b in nasty_string()) {
        let export = Export::parse("-- export: t
-- param: a text max_length=4096
-- param: b text max_length=4096
SELECT x FROM s.t WHERE name = :a AND note LIKE :b AND upper(code) <> :a ORDER BY CASE WHEN x = :b THEN 1 ELSE 2 END").unwrap();
        check(&export, json!({"a": a, "b": b}).as_object().unwrap(), &["a", "b", "a", "b"])?;
    }
}
