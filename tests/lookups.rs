//! Lookups on the local stack, over signed HTTP: the seed's `GET /customer/{ids}`, every
//! parameter type through the query string, values that would be SQL were they written into
//! it, the errors, and the caching headers.

use crate::common::*;
use export_client::lookup_path;
use http::Method;
use serde_json::{json, Value};

/// Lookups over literal rows, so the tests know exactly what each value selects.
const TYPES: &str = "-- export: types
-- description: Echoes one value of each type, for the rows whose n is listed.
-- lookup: max_rows=10 cache=60s
-- param: ids list<integer> max_items=5
-- param: i integer
-- param: d decimal(6,2)
-- param: day date
-- param: at timestamp
-- param: b boolean
-- param: e enum(RED|GREEN)
-- param: t text optional
SELECT n, :i AS i, :d AS d, :day AS day, :at AS at, :b AS b, :e AS e, :t AS t
FROM (VALUES (1), (2), (3)) AS v(n)
WHERE n IN (:ids)
ORDER BY n
";

const NAMES: &str = "-- export: names
-- description: Rows whose name is exactly the one given.
-- lookup: max_rows=2
-- param: name text max_length=200
SELECT n, name FROM (VALUES
  (1, 'O''Neil'), (2, 'back\\\\slash'), (3, 'x'' OR ''1''=''1'), (4, 'x'), (5, 'x'), (6, 'x')
) AS v(n, name)
WHERE name = :name
ORDER BY n
";

async fn lookup_stack() -> TestStack {
    let sql = sql_dir_with(&[("types", TYPES), ("names", NAMES)], &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // Inside the stack's own directory, so it lasts as long as the stack.
    let sql_dir = dir.path().join("sql");
    copy_tree(sql.path(), &sql_dir);
    config.sql = SqlSource::Dir(sql_dir);
    start_with(dir, config).await
}

async fn get(
    client: &export_client::Client,
    path: &str,
    headers: &[(&str, &str)],
) -> export_client::Reply {
    client.send(Method::GET, path, None, headers).await.unwrap()
}

#[tokio::test]
async fn the_seed_s_route_answers_three_customers() {
    let stack = start().await;
    let reply = get(&stack.alice, "/customer/1,2,3", &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let rows = reply.json().unwrap();
    let keys: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["c_custkey"].as_i64().unwrap())
        .collect();
    assert_eq!(keys, [1, 2, 3]);
    assert_eq!(rows[0]["c_name"], "Customer#000000001");
    // A decimal keeps its digits: text, not a float.
    assert!(rows[0]["c_acctbal"].is_string(), "{}", rows[0]);

    // The same through /lookups, ids repeated instead of comma-separated.
    let answer = stack
        .alice
        .lookup("customers", &[("ids", "3"), ("ids", "1")])
        .await
        .unwrap();
    assert_eq!(answer.dataset, "customers");
    assert_eq!(answer.row_count, 2);
    assert_eq!(answer.rows[0]["c_custkey"], 1);
    assert_eq!(answer.rows[1]["c_custkey"], 3);
    let types: Vec<&str> = answer
        .columns
        .iter()
        .map(|c| c.type_name.as_str())
        .collect();
    assert_eq!(types[0], "int8", "{types:?}");
    assert_eq!(types[5], "numeric", "{types:?}");
    stack.stack.stop().await;
}

#[tokio::test]
async fn every_type_goes_through_the_query_string() {
    let stack = lookup_stack().await;
    let answer = stack
        .alice
        .lookup(
            "types",
            &[
                ("ids", "3,1"),
                ("i", "-42"),
                ("d", "0012.5"),
                ("day", "2024-02-29"),
                ("at", "2024-02-29T23:59:58.25"),
                ("b", "false"),
                ("e", "GREEN"),
                ("t", "naïve ✓"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(answer.row_count, 2, "{answer:?}");
    let first = Value::Object(answer.rows[0].clone());
    assert_eq!(
        first,
        json!({
            "n": 1, "i": -42, "d": "12.50", "day": "2024-02-29",
            "at": "2024-02-29 23:59:58.250", "b": false, "e": "GREEN", "t": "naïve ✓"
        })
    );
    assert_eq!(answer.rows[1]["n"], 3);
    // Left out, the optional text is NULL.
    let without = stack
        .alice
        .lookup(
            "types",
            &[
                ("ids", "2"),
                ("i", "1"),
                ("d", "1"),
                ("day", "2024-01-01"),
                ("at", "2024-01-01 00:00:00"),
                ("b", "true"),
                ("e", "RED"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(without.rows[0]["t"], Value::Null);
    assert_eq!(without.rows[0]["b"], true);
    stack.stack.stop().await;
}

#[tokio::test]
async fn values_full_of_quotes_and_sql_return_exactly_their_rows() {
    let stack = lookup_stack().await;
    for (name, expected) in [
        ("O'Neil", vec![1]),
        // The catalogue's literal 'back\\slash' holds one backslash, as Redshift reads it.
        ("back\\slash", vec![2]),
        ("back\\\\slash", vec![]),
        ("x' OR '1'='1", vec![3]),
        ("'; DROP TABLE v; --", vec![]),
        ("\\'", vec![]),
        ("O''Neil", vec![]),
    ] {
        let answer = stack
            .alice
            .lookup("names", &[("name", name)])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let found: Vec<i64> = answer
            .rows
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect();
        assert_eq!(found, expected, "{name}");
    }
    stack.stack.stop().await;
}

#[tokio::test]
async fn lookups_refuse_what_an_export_refuses_and_more_rows_than_they_answer() {
    let stack = lookup_stack().await;
    let error = |reply: export_client::Reply| {
        let body = reply.json().unwrap();
        (
            reply.status.as_u16(),
            body["error"]["code"].as_str().unwrap().to_owned(),
            body["error"]["field"].as_str().map(str::to_owned),
        )
    };
    for (path, expected) in [
        (
            lookup_path("customers", &[("ids", "1,x")]),
            (400, "invalid_parameter", Some("params.ids[1]")),
        ),
        (
            lookup_path("customers", &[]),
            (400, "invalid_parameter", Some("params.ids")),
        ),
        (
            lookup_path("customers", &[("ids", "1"), ("segment", "SPACESHIPS")]),
            (400, "invalid_parameter", Some("params.segment")),
        ),
        (
            lookup_path("customers", &[("ids", "1"), ("colour", "red")]),
            (400, "invalid_parameter", Some("params.colour")),
        ),
        (
            lookup_path("shipped_lineitems", &[]),
            (400, "lookup_not_offered", Some("dataset")),
        ),
        (
            lookup_path("nothing", &[]),
            (404, "unknown_dataset", Some("dataset")),
        ),
        (
            lookup_path("names", &[("name", "x")]),
            (422, "too_many_rows", None),
        ),
        (
            "/customer/1,two".to_owned(),
            (400, "invalid_parameter", Some("params.ids[1]")),
        ),
    ] {
        let (status, code, field) = expected;
        assert_eq!(
            error(get(&stack.alice, &path, &[]).await),
            (status, code.to_owned(), field.map(str::to_owned)),
            "{path}"
        );
    }
    // Unsigned: refused before anything runs.
    let unsigned = reqwest::get(format!("{}/customer/1", stack.stack.base_url()))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    stack.stack.stop().await;
}

#[tokio::test]
async fn answers_carry_validators_and_freshness() {
    let stack = start().await;
    let path = lookup_path("customers", &[("ids", "7,8")]);
    let first = get(&stack.alice, &path, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json().unwrap()["cached"], false);
    let tag = first.headers["etag"].to_str().unwrap().to_owned();
    let max_age: u64 = first.headers["cache-control"]
        .to_str()
        .unwrap()
        .strip_prefix("private, max-age=")
        .expect("a max-age")
        .parse()
        .unwrap();
    assert!((170..=180).contains(&max_age), "{max_age}");

    // Asked again: from the cache, same validator; with it, 304 and no body.
    let second = get(&stack.alice, &path, &[]).await;
    assert_eq!(second.json().unwrap()["cached"], true);
    assert_eq!(second.headers["etag"].to_str().unwrap(), tag);
    let unchanged = get(&stack.alice, &path, &[("if-none-match", &tag)]).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.headers["etag"].to_str().unwrap(), tag);

    // no-cache: read again from the warehouse, the same rows, the same validator.
    let fresh = get(&stack.alice, &path, &[("cache-control", "no-cache")]).await;
    let body = fresh.json().unwrap();
    assert_eq!(
        (body["cached"].clone(), body["age_seconds"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(fresh.headers["etag"].to_str().unwrap(), tag);

    // CSV on request, with a validator of its own.
    let csv = get(&stack.alice, &path, &[("accept", "text/csv")]).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_ne!(csv.headers["etag"].to_str().unwrap(), tag);
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("c_custkey,c_name,"), "{text}");
    assert!(lines[1].starts_with("7,Customer#000000007,"), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    stack.stack.stop().await;
}
