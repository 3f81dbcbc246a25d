//! Redshift's SQL on DataFusion, for the local warehouse: a statement written for Redshift
//! runs here with Redshift's answer, or is refused by name.
//!
//! Two halves. [`rewrite`] parses the text in Redshift's dialect and rewrites what Redshift
//! spells differently (`TOP n`, `DECODE`, `NVL`, `LISTAGG … WITHIN GROUP`, `RATIO_TO_REPORT`,
//! `APPROXIMATE COUNT`, `GETDATE`, `SYSDATE`, `CHARINDEX`, `LEN`, date parts written as words
//! and abbreviations, `EXTRACT` of Redshift's parts); the functions DataFusion lacks or answers
//! otherwise are registered as functions of the session ([`datetime`], [`text`]). What is
//! covered, and what is not, is listed in ARCHITECTURE.md ("The local warehouse's SQL") and
//! checked by the conformance corpus in `corpus/`, cases from Redshift's SQL reference.

mod average;
mod convert;
mod datetime;
mod format;
mod ordered;
pub mod parts;
pub mod rewrite;
mod rowfn;
mod text;

use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;

/// A session that speaks Redshift's SQL: text parsed as Redshift parses it (backslash escapes
/// in literals), Redshift's functions registered.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_create_default_catalog_and_schema(true);
    config.options_mut().sql_parser.dialect =
        "redshift".parse().expect("a dialect DataFusion names");
    let ctx = SessionContext::new_with_config(config);
    register(&ctx);
    ctx
}

/// Adds Redshift's functions to the session (replacing DataFusion's of the same name, such as
/// `date_part` and `trunc`, whose answers differ).
pub fn register(ctx: &SessionContext) {
    let functions = datetime::functions()
        .into_iter()
        .chain(text::functions())
        .chain(format::functions())
        .chain([
            convert::to_date(),
            convert::to_timestamp(),
            convert::as_text(),
        ]);
    for udf in functions {
        ctx.register_udf(udf);
    }
    for udaf in ordered::functions().into_iter().chain([average::avg()]) {
        ctx.register_udaf(udaf);
    }
    ctx.add_analyzer_rule(std::sync::Arc::new(convert::RedshiftCasts::default()));
}

/// Plans one Redshift statement in a session [`register`] has prepared, within `options`.
pub async fn plan(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
) -> Result<LogicalPlan, String> {
    let statements = rewrite::parse(sql).map_err(error)?;
    let [statement] = <[_; 1]>::try_from(statements)
        .map_err(|v| error(format!("expected one statement, found {}", v.len())))?;
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(|e| error(planner_message(&e.to_string())))?;
    options
        .verify_plan(&plan)
        .map_err(|e| error(e.to_string()))?;
    Ok(plan)
}

/// Plans one Redshift statement and types it (the analyzer's rules: coercions, Redshift's
/// casts), without optimizing or running it: what a check needs, since optimizing folds
/// constants, and a sample value folded into a cast may fail where a real one would not.
pub async fn plan_typed(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
) -> Result<LogicalPlan, String> {
    let plan = plan(ctx, sql, options).await?;
    let state = ctx.state();
    state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .map_err(|e| error(planner_message(&e.to_string())))
}

/// Runs one Redshift statement (a query, or the DDL and DML the options allow) to its rows.
pub async fn run(
    ctx: &SessionContext,
    sql: &str,
    options: SQLOptions,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, String> {
    let plan = plan(ctx, sql, options).await?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| error(e.to_string()))?;
    frame.collect().await.map_err(|e| error(e.to_string()))
}

fn error(message: impl std::fmt::Display) -> String {
    format!("ERROR: {message}")
}

/// A function the planner does not know is one the local warehouse does not support: say so
/// by its name, not with the planner's guess at another.
fn planner_message(message: &str) -> String {
    let unknown = message
        .split_once("Invalid function '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name);
    match unknown {
        Some(name) => format!(
            "`{}` is not supported by the local warehouse",
            name.to_uppercase()
        ),
        None => message.to_owned(),
    }
}
