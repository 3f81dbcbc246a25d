//! What a lookup's SELECT does on DataFusion: its values bound by name, its plan kept, its rows typed.

use super::*;
use datafusion::arrow::record_batch::RecordBatch;
use export_core::catalog::{Catalog, SqlParameter};
use serde_json::json;
use serde_json::Value;

#[tokio::test]
async fn values_are_bound_and_rows_come_back_typed() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    let bound = BoundSelect {
        sql: "SELECT CAST(:p1 AS BIGINT) + 1 AS n, CAST(:p2 AS VARCHAR(65535)) AS t, \
              CAST(:p3 AS DECIMAL(6,2)) AS d, CAST(:p4 AS DATE) AS day, \
              CAST(:p5 AS TIMESTAMP) AS at, CAST(:p6 AS BOOLEAN) AS b, \
              CAST(NULL AS BIGINT) AS nothing, 0.5 AS half"
            .into(),
        params: [
            ("p1", "41"),
            ("p2", "O'Neil \\ '); DROP TABLE x; --"),
            ("p3", "12.5"),
            ("p4", "2024-02-29"),
            ("p5", "2024-02-29 10:11:12.5"),
            ("p6", "true"),
        ]
        .into_iter()
        .map(|(name, value)| SqlParameter {
            name: name.into(),
            value: value.into(),
        })
        .collect(),
    };
    let result = LookupSession::over(&ctx).select(&bound).await.unwrap();
    let types: Vec<&str> = result
        .columns
        .iter()
        .map(|c| c.type_name.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "int8",
            "varchar",
            "numeric",
            "date",
            "timestamp",
            "bool",
            "int8",
            "float8"
        ]
    );
    assert_eq!(
        result.rows,
        vec![vec![
            json!(42),
            json!("O'Neil \\ '); DROP TABLE x; --"),
            json!("12.50"),
            json!("2024-02-29"),
            json!("2024-02-29 10:11:12.500"),
            json!(true),
            Value::Null,
            json!(0.5),
        ]]
    );
}

#[tokio::test]
async fn a_kept_plan_binds_each_lookup_s_own_values() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    ctx.sql(
        "CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b''s'), (3, 'c')",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let session = LookupSession::over(&ctx);
    for (id, name) in [("1", "a"), ("3", "c"), ("2", "b's"), ("1", "a")] {
        let bound = BoundSelect {
            sql: "SELECT name FROM people WHERE id = CAST(:p1 AS BIGINT)".into(),
            params: vec![SqlParameter {
                name: "p1".into(),
                value: id.into(),
            }],
        };
        let result = session.select(&bound).await.unwrap();
        assert_eq!(result.rows, vec![vec![json!(name)]], "id {id}");
    }
    assert_eq!(session.plans.lock().unwrap().len(), 1, "one text, one plan");
    assert!(
        session
            .plans
            .lock()
            .unwrap()
            .values()
            .all(|k| k.physical.is_some()),
        "the text's physical plan is kept and read each lookup's values"
    );
    // The warehouse's own session still sees its tables.
    let count = ctx
        .sql("SELECT count(*) FROM people")
        .await
        .unwrap()
        .collect()
        .await;
    assert!(count.is_ok(), "{count:?}");
    // A text that is not one SELECT is refused before anything is planned or kept.
    let refused = session
        .select(&BoundSelect {
            sql: "DROP TABLE people".into(),
            params: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(refused.starts_with("ERROR: "), "{refused}");
    assert_eq!(session.plans.lock().unwrap().len(), 1);
}

/// "SqlParameter" (Amazon Redshift Data API Reference): a value is text, and Redshift
/// converts it to the type the statement needs, so a SELECT need not cast its placeholders.
#[tokio::test]
async fn untyped_values_convert_to_the_type_they_are_compared_with() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    ctx.sql(
        "CREATE TABLE people (id BIGINT, name VARCHAR, born DATE) AS VALUES \
         (1, 'a', DATE '1990-05-01'), (2, 'b', DATE '2001-01-31'), (3, 'c', DATE '2010-12-24')",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let session = LookupSession::over(&ctx);
    let select = |sql: &str, values: &[(&str, &str)]| BoundSelect {
        sql: sql.into(),
        params: values
            .iter()
            .map(|(name, value)| SqlParameter {
                name: (*name).into(),
                value: (*value).into(),
            })
            .collect(),
    };
    for (k, name) in [("2", "b"), ("3", "c"), ("1", "a")] {
        let result = session
            .select(&select(
                "SELECT name FROM people WHERE id = :k",
                &[("k", k)],
            ))
            .await
            .unwrap();
        assert_eq!(result.rows, vec![vec![json!(name)]], "k = {k}");
    }
    let result = session
        .select(&select(
            "SELECT name FROM people WHERE born >= :since AND id < :below ORDER BY id",
            &[("since", "2000-01-01"), ("below", "10")],
        ))
        .await
        .unwrap();
    assert_eq!(result.rows, vec![vec![json!("b")], vec![json!("c")]]);
    // Text that is not of the type is refused, as Redshift refuses it.
    let refused = session
        .select(&select(
            "SELECT name FROM people WHERE id = :k",
            &[("k", "two")],
        ))
        .await
        .unwrap_err();
    assert!(refused.starts_with("ERROR: "), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_at_once_on_one_kept_plan_each_read_their_own_values() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    ctx.sql("CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let session = Arc::new(LookupSession::over(&ctx));
    let lookups = (0..64).map(|n| {
        let session = session.clone();
        tokio::spawn(async move {
            let id = n % 3 + 1;
            let bound = BoundSelect {
                sql:
                    "SELECT id, name FROM people WHERE id = CAST(:p1 AS BIGINT) ORDER BY id LIMIT 5"
                        .into(),
                params: vec![SqlParameter {
                    name: "p1".into(),
                    value: id.to_string(),
                }],
            };
            (id, session.select(&bound).await.unwrap().rows)
        })
    });
    for lookup in futures::future::join_all(lookups).await {
        let (id, rows) = lookup.unwrap();
        let name = ["a", "b", "c"][id as usize - 1];
        assert_eq!(rows, vec![vec![json!(id), json!(name)]], "id {id}");
    }
    let plans = session.plans.lock().unwrap();
    assert!(plans.values().all(|k| k.physical.is_some()));
}

#[tokio::test]
async fn a_plan_that_runs_work_on_other_tasks_is_bound_per_lookup_instead() {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::datasource::MemTable;
    let ctx = crate::warehouse::redshift_session().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let batch = |ids: Vec<i64>, names: Vec<&str>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    };
    // Two partitions, read without an order: merging them spawns a task per partition,
    // where the lookup's values are not in scope.
    let table = MemTable::try_new(
        schema.clone(),
        vec![
            vec![batch(vec![1, 2], vec!["a", "b"])],
            vec![batch(vec![3, 4], vec!["c", "d"])],
        ],
    )
    .unwrap();
    ctx.register_table("halves", Arc::new(table)).unwrap();
    let session = LookupSession::over(&ctx);
    let sql = "SELECT name FROM halves WHERE id = CAST(:p1 AS BIGINT)";
    for (id, name) in [("3", "c"), ("2", "b"), ("4", "d")] {
        let bound = BoundSelect {
            sql: sql.into(),
            params: vec![SqlParameter {
                name: "p1".into(),
                value: id.into(),
            }],
        };
        let result = session.select(&bound).await.unwrap();
        assert_eq!(result.rows, vec![vec![json!(name)]], "id {id}");
    }
    assert!(
        session.plans.lock().unwrap()[sql].physical.is_none(),
        "the text is planned per lookup from now on"
    );
}

#[tokio::test]
async fn a_lookup_from_the_catalogue_reads_what_its_values_select() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    ctx.sql(
        "CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b''s'), (3, 'c')",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let catalog = Catalog::from_sources([(
        "people.sql",
        "-- export: people\n-- lookup:\n-- param: ids list<integer>\n-- param: name text optional\n\
         SELECT id, name FROM people WHERE id IN (:ids) AND (:name IS NULL OR name = :name) ORDER BY id",
    )])
    .unwrap();
    let export = catalog.get("people").unwrap();
    let session = LookupSession::over(&ctx);
    let run = |params: serde_json::Value| {
        let bound = export.bind(params.as_object().unwrap()).unwrap();
        export.lookup_select(&bound, 10).unwrap()
    };
    let rows = |r: ResultSet| r.rows;
    assert_eq!(
        rows(session.select(&run(json!({"ids": [3, 1]}))).await.unwrap()),
        vec![vec![json!(1), json!("a")], vec![json!(3), json!("c")]]
    );
    assert_eq!(
        rows(
            session
                .select(&run(json!({"ids": [1, 2, 3], "name": "b's"})))
                .await
                .unwrap()
        ),
        vec![vec![json!(2), json!("b's")]]
    );
    // A value that would be SQL, were it written into the text, matches nothing.
    assert!(rows(
        session
            .select(&run(json!({"ids": [1], "name": "x' OR '1'='1"})))
            .await
            .unwrap()
    )
    .is_empty());
    // Lists and optional values too are read as the kept plans run.
    assert!(session
        .plans
        .lock()
        .unwrap()
        .values()
        .all(|k| k.physical.is_some()));
}

/// The constructs a Redshift user writes daily, one lookup each over the demo schema, answered
/// as Redshift documents them ("Date and time functions", "String functions", "Conditional
/// expressions", "SELECT list"…).
#[tokio::test]
async fn redshift_s_everyday_constructs_run_over_the_demo_tables() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/schema.sql");
    crate::tables::load_schema(&ctx, &schema).await.unwrap();
    let session = LookupSession::over(&ctx);
    let one = |sql: &str| BoundSelect {
        sql: sql.into(),
        params: Vec::new(),
    };
    for (sql, want) in [
        ("SELECT TOP 2 sku FROM rsdataapi.product_detail ORDER BY product_id", json!([["FLOWER12"], ["FLOWER13"]])),
        ("SELECT DATEADD(month, 1, created_on) FROM rsdataapi.product_detail WHERE sku = 'FLOWER12'", json!([["2023-04-01 00:00:00"]])),
        ("SELECT DATEDIFF(year, '2022-12-31', created_on) FROM rsdataapi.product_detail WHERE sku = 'FLOWER12'", json!([[1]])),
        ("SELECT CAST(DATE_PART(month, created_on) AS INT) FROM rsdataapi.product_detail WHERE sku = 'FLOWER15'", json!([[4]])),
        ("SELECT TRUNC(CAST('2023-03-01 10:11:12' AS TIMESTAMP))", json!([["2023-03-01"]])),
        ("SELECT ADD_MONTHS('2023-02-28', 1), MONTHS_BETWEEN('2023-03-31', '2023-02-28')", json!([["2023-03-31 00:00:00", 1.0]])),
        ("SELECT CONVERT_TIMEZONE('UTC', 'America/New_York', '2023-07-01 12:00:00')", json!([["2023-07-01 08:00:00"]])),
        ("SELECT LEN(product_name), CHARINDEX('Rose', product_name) FROM rsdataapi.product_detail WHERE sku = 'FLOWER12'", json!([[14, 11]])),
        ("SELECT REGEXP_SUBSTR(product_name, '[A-Z][a-z]+$') FROM rsdataapi.product_detail WHERE sku = 'PLANT22'", json!([["Cactus"]])),
        ("SELECT DECODE(sku, 'FLOWER12', 'rose', 'other') FROM rsdataapi.product_detail WHERE product_id < 12347 ORDER BY product_id", json!([["rose"], ["other"]])),
        ("SELECT NVL(NULL, NULL, 'x'), NVL2(NULL, 'a', 'b'), LEAST('b', 'a', 'c'), GREATEST('b', 'a', 'c')", json!([["x", "b", "a", "c"]])),
        ("SELECT LISTAGG(sku, ',') WITHIN GROUP (ORDER BY sku DESC) FROM rsdataapi.product_detail WHERE sku LIKE 'SEED%'", json!([["SEED32,SEED31"]])),
        ("SELECT sku, RATIO_TO_REPORT(1) OVER (PARTITION BY created_on) FROM rsdataapi.product_detail WHERE sku LIKE 'POT%' ORDER BY sku", json!([["POT41", 0.5], ["POT42", 0.5]])),
        ("SELECT APPROXIMATE COUNT(DISTINCT created_on) FROM rsdataapi.product_detail", json!([[10]])),
        ("SELECT MEDIAN(product_id) FROM rsdataapi.product_detail WHERE sku LIKE 'POT%'", json!([[41001.5]])),
        ("SELECT '2023-03-01'::date = created_on FROM rsdataapi.product_detail WHERE sku = 'FLOWER12'", json!([[true]])),
    ] {
        let rows = session
            .select(&one(sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows;
        assert_eq!(json!(rows), want, "{sql}");
    }
}

#[tokio::test]
async fn getdate_has_no_fraction_of_a_second_and_sysdate_is_a_timestamp() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    let result = LookupSession::over(&ctx)
        .select(&BoundSelect {
            sql: "SELECT GETDATE() AS now, SYSDATE AS transaction_start".into(),
            params: Vec::new(),
        })
        .await
        .unwrap();
    let types: Vec<&str> = result
        .columns
        .iter()
        .map(|c| c.type_name.as_str())
        .collect();
    assert_eq!(types, ["timestamp", "timestamp"]);
    let now = result.rows[0][0].as_str().unwrap().to_owned();
    assert!(!now.contains('.'), "GETDATE keeps no fraction: {now}");
}

#[tokio::test]
async fn what_the_local_warehouse_cannot_run_is_named() {
    let ctx = crate::warehouse::redshift_session().unwrap();
    let e = LookupSession::over(&ctx)
        .select(&BoundSelect {
            sql: "SELECT * FROM (SELECT 1 AS a, 'x' AS b) PIVOT (sum(a) FOR b IN ('x'))".into(),
            params: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.contains("`PIVOT` is not supported by the local warehouse"),
        "{e}"
    );
    let e = LookupSession::over(&ctx)
        .select(&BoundSelect {
            sql: "SELECT HLL_CREATE_SKETCH(1)".into(),
            params: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.contains("`HLL_CREATE_SKETCH` is not supported by the local warehouse"),
        "{e}"
    );
}
