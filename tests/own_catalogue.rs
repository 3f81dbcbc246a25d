//! A team's own catalogue over its own data on the local stack: served instead of the demo's,
//! written in Redshift's SQL, and checked before it runs (at start, and by `check` for a CI).

use crate::common::*;
use export_local::tables::TableFile;
use std::path::Path;
use std::time::Duration;

/// Everyday Redshift in a team's entry: TOP, DATEADD with a bare date part, DECODE.
const DAILY_SALES: &str = "-- export: daily_sales
-- description: One day's sales of a team's own table.
-- lookup: max_rows=10
-- param: day date -- the day
SELECT TOP 100 store,
       DATEADD(day, 1, sold_on) AS next_day,
       DECODE(kind, 'a', 'alpha', 'other') AS kind_name
FROM shop.sales
WHERE sold_on = :day
ORDER BY store
";

/// Redshift's words no parser knows, through the local UNLOAD.
const KINDS: &str = "-- export: kinds
-- description: How many kinds a store sells, and on which weekday it last sold.
-- param: n integer -- the least quantity
SELECT store,
       APPROXIMATE COUNT(DISTINCT kind) AS kinds,
       MAX(EXTRACT(dow FROM sold_on)) AS weekday,
       MAX(TRIM(BOTH FROM kind)) AS kind
FROM shop.sales
WHERE qty >= :n
GROUP BY store
";

/// Line 5 calls a function the local warehouse does not have.
const SKETCHES: &str = "-- export: sketches
-- description: Reads what the local warehouse cannot run.
-- param: n integer -- a number
SELECT store,
       HLL_CREATE_SKETCH(store) AS sketch
FROM shop.sales
WHERE qty > :n
";

/// At their largest, 5,000 values of 4,096 quotes each: far past Redshift's 16 MB statement.
const HUGE: &str = "-- export: huge
-- description: Takes more values than one statement holds.
-- param: stores list<text> max_length=4096 max_items=5000 -- stores
SELECT store FROM shop.sales WHERE CAST(store AS VARCHAR) IN (:stores)
";

const SALES_CSV: &str =
    "store,sold_on,kind,qty\n1,2024-01-02,a,5\n2,2024-01-02,b,7\n3,2024-01-03,a,1\n";

/// A catalogue directory with `entries`, and the team's table beside it.
fn team_dir(entries: &[(&str, &str)]) -> (tempfile::TempDir, TableFile) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sql/catalog")).unwrap();
    for (name, text) in entries {
        std::fs::write(dir.path().join(format!("sql/catalog/{name}.sql")), text).unwrap();
    }
    let csv = dir.path().join("sales.csv");
    std::fs::write(&csv, SALES_CSV).unwrap();
    let table = format!("shop.sales={}", csv.display()).parse().unwrap();
    (dir, table)
}

/// A stack's configuration serving `entries` over the team's table, in directories of its own
/// (the team's, the stack's).
fn team_stack(
    entries: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    export_local::LocalConfig,
) {
    let (team, table) = team_dir(entries);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sql = SqlSource::Dir(team.path().join("sql"));
    config.tables = vec![table];
    (team, dir, config)
}

/// Submits `request` as alice and waits for it to succeed: the rows it exported.
async fn exported_rows(stack: &TestStack, request: serde_json::Value) -> Option<u64> {
    let id = submit_ok(&stack.alice, request).await;
    let done = wait_done(&stack.alice, &id).await;
    assert_eq!(
        done.summary.status,
        export_api::JobStatus::Succeeded,
        "{done:?}"
    );
    done.summary.rows
}

/// Runs the binary in `cwd` with `args`, failing the test past a minute.
async fn run_in(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    run_cli(cwd, args, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_team_serves_its_own_catalogue_over_its_own_table() {
    let (_team, dir, config) = team_stack(&[("daily_sales", DAILY_SALES), ("kinds", KINDS)]);
    let stack = start_with(dir, config).await;

    let catalogue = stack.alice.datasets().await.unwrap();
    let names: Vec<&str> = catalogue.datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["daily_sales", "kinds"],
        "the team's catalogue, not the demo's"
    );

    let answer = stack
        .alice
        .lookup("daily_sales", &[("day", "2024-01-02")])
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&answer).unwrap()["rows"],
        serde_json::json!([
            {"store": 1, "next_day": "2024-01-03 00:00:00", "kind_name": "alpha"},
            {"store": 2, "next_day": "2024-01-03 00:00:00", "kind_name": "other"}
        ])
    );

    let daily = serde_json::json!({"dataset": "daily_sales", "params": {"day": "2024-01-03"}});
    assert_eq!(exported_rows(&stack, daily).await, Some(1));
    let kinds = serde_json::json!({"dataset": "kinds", "params": {"n": 2}});
    assert_eq!(
        exported_rows(&stack, kinds).await,
        Some(2),
        "stores 1 and 2 sold two or more"
    );
    stack.stack.stop().await;
}

#[tokio::test]
async fn an_entry_that_cannot_run_stops_the_start_with_its_file_line_and_reason() {
    let (_team, _dir, config) = team_stack(&[("daily_sales", DAILY_SALES), ("sketches", SKETCHES)]);
    let refused = export_local::LocalStack::start(config)
        .await
        .err()
        .expect("the stack does not start");
    let message = format!("{refused:#}");
    assert!(message.contains("sketches.sql:5:"), "{message}");
    assert!(
        message.contains("`HLL_CREATE_SKETCH` is not supported by the local warehouse"),
        "{message}"
    );
    assert!(
        !message.contains("daily_sales"),
        "the good entry is not named: {message}"
    );
}

#[tokio::test]
async fn check_names_each_broken_entry_and_exits_non_zero() {
    let (team, table) = team_dir(&[
        ("daily_sales", DAILY_SALES),
        ("sketches", SKETCHES),
        ("huge", HUGE),
    ]);
    let table = format!("{}={}", table.qualified(), table.path.display());
    let sql = team.path().join("sql");
    let args = [
        "check",
        "--sql-dir",
        sql.to_str().unwrap(),
        "--table",
        &table,
    ];
    let (ok, out, err) = run_in(team.path(), &args).await;
    assert!(!ok, "{out}\n{err}");
    assert!(out.contains("sketches.sql:5: export 'sketches'"), "{out}");
    assert!(out.contains("huge.sql:4: export 'huge'"), "{out}");
    assert!(out.contains("statement limit"), "{out}");
    assert!(!out.contains("daily_sales"), "{out}");
    assert!(err.contains("2 of 3 catalogue entries cannot run"), "{err}");

    // Without the team's table, its entries cannot plan either.
    std::fs::remove_file(sql.join("catalog/sketches.sql")).unwrap();
    std::fs::remove_file(sql.join("catalog/huge.sql")).unwrap();
    let (ok, out, _) = run_in(team.path(), &args[..3]).await;
    assert!(!ok);
    assert!(out.contains("daily_sales.sql:8:"), "the FROM line: {out}");
    let (ok, out, err) = run_in(team.path(), &args).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("1 entry checked"), "{out}");
}

#[tokio::test]
async fn the_demo_catalogue_is_built_in_and_found_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_in(elsewhere.path(), &["check"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("the demo catalogue built into this binary"),
        "{out}"
    );
    assert!(out.contains("4 entries checked"), "{out}");
}
