//! A value reaches the local warehouse as a literal the catalogue rendered (`sql::Literal`);
//! whatever Redshift's spellings the statement around it uses, the rewrite must move the
//! literal as it is: no value may change, or change the statement's structure.

use datafusion::arrow::array::{Array, StringArray};
use datafusion::execution::context::SQLOptions;
use export_core::sql::Literal;

const VALUES: &[&str] = &[
    "\\",
    "'",
    "\\'",
    "''",
    "\\\\') OR (1=1) OR ('\\\\",
    "x' OR 1=1 OR 'a'='",
    "it's",
    "a\\nb",
    "%_",
    "\u{e9}t\u{e9}",
];

#[tokio::test]
async fn a_value_is_the_same_value_whatever_the_statement_around_it_rewrites() {
    let ctx = export_dialect::session();
    for value in VALUES {
        let literal = Literal::text(value).unwrap().to_sql();
        // Each rewrite that moves its arguments into a new expression, plus the text pass
        // (APPROXIMATE, EXTRACT of an abbreviation, TRIM(BOTH FROM …)).
        let sql = format!(
            "SELECT {literal} AS v, \
                    DECODE({literal}, 'no', 'matched', {literal}) AS decoded, \
                    NVL(NULL, {literal}) AS nvl, \
                    LISTAGG({literal}, ',') WITHIN GROUP (ORDER BY 1) OVER () AS listed, \
                    TRIM(BOTH FROM {literal}) AS trimmed, \
                    EXTRACT(ms FROM CAST('2024-01-01 10:00:00.250' AS TIMESTAMP)) AS ms, \
                    APPROXIMATE COUNT(DISTINCT {literal}) OVER () AS n \
             FROM (SELECT 1) AS one WHERE {literal} = {literal}"
        );
        let batches = export_dialect::run(&ctx, &sql, SQLOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{value:?}: {e}\n{sql}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "{value:?}: one row, as the statement says");
        let batch = &batches[0];
        for column in ["v", "decoded", "nvl", "listed", "trimmed"] {
            let text = batch
                .column_by_name(column)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(0).to_owned())
                .unwrap_or_else(|| {
                    datafusion::arrow::util::display::array_value_to_string(
                        batch.column_by_name(column).unwrap(),
                        0,
                    )
                    .unwrap()
                });
            let want = if column == "trimmed" {
                value.trim_matches(' ')
            } else {
                value
            };
            assert_eq!(text, want, "{value:?} in {column}");
        }
        assert!(!batch.column_by_name("ms").unwrap().is_null(0));
    }
}

/// Text compared with a number is read as a number, as Redshift converts it ("Type
/// compatibility and conversion": a string literal compared with a numeric column).
#[tokio::test]
async fn text_compared_with_a_number_is_read_as_a_number() {
    let ctx = export_dialect::session();
    export_dialect::run(&ctx, "CREATE TABLE quantities (qty INT)", SQLOptions::new())
        .await
        .unwrap();
    export_dialect::run(
        &ctx,
        "INSERT INTO quantities VALUES (5), (10), (40)",
        SQLOptions::new(),
    )
    .await
    .unwrap();
    let batches = export_dialect::run(
        &ctx,
        "SELECT count(*) AS n FROM quantities WHERE qty > '9'",
        SQLOptions::new(),
    )
    .await
    .unwrap();
    let n =
        datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    assert_eq!(n, "2", "10 and 40 are above 9 (as text, '10' is not)");
}
