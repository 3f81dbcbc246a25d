//! A lookup's SELECT run in DataFusion with its values bound as parameters, the way the Data
//! API binds `ExecuteStatement`'s `Parameters`: each value arrives as text for a named
//! placeholder (`:p1`) and never enters the statement's text; the SELECT's own casts give it
//! its type. The rows come back typed by their columns, as `GetStatementResult` types them.

use super::rows::{append_rows, columns};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::utils::take_function_args;
use datafusion::common::{exec_datafusion_err, exec_err, ParamValues, ScalarValue};
use datafusion::execution::context::{SQLOptions, SessionContext, SessionState};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{
    cast, lit, ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::ExecutionPlan;
use export_core::catalog::BoundSelect;
use export_core::ports::ResultSet;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Plans kept at most; a lookup's text varies only with how many values a list has.
const KEPT_PLANS: usize = 512;

/// Where lookups run: the warehouse's tables, in a session of their own that plans each
/// SELECT on one partition (a lookup reads a few rows; splitting it costs more than it
/// saves) and keeps each text's plans, so a repeated SELECT runs with new values without
/// being parsed, analyzed, optimized or planned again, as a prepared statement does
/// (docs/BENCHMARKS.md, *Lookups under concurrent clients*).
pub struct LookupSession {
    ctx: SessionContext,
    /// The session's state and the task context its plans run in, each taken once: taking
    /// them per lookup copies every function registry twice.
    state: SessionState,
    task: Arc<TaskContext>,
    plans: Mutex<HashMap<String, Kept>>,
}

/// What is kept of a SELECT's text: its optimized logical plan, placeholders and all, and
/// when it can be had, a physical plan that reads each value as it runs.
#[derive(Clone)]
struct Kept {
    logical: LogicalPlan,
    physical: Option<Arc<dyn ExecutionPlan>>,
}

tokio::task_local! {
    /// The values of the lookup whose kept physical plan is running, by parameter name.
    static VALUES: Arc<HashMap<String, String>>;
}

/// What `lookup_parameter` answers when no lookup's values are in scope: the plan ran some of
/// its work on another task. The lookup is then planned with its values bound instead.
const OUT_OF_SCOPE: &str = "lookup_parameter read outside its lookup";

impl LookupSession {
    /// A session over `warehouse`'s tables (the same catalogue, not a copy).
    pub fn over(warehouse: &SessionContext) -> LookupSession {
        // The catalogue list is the warehouse's own; a new default catalogue would replace
        // the one holding its tables.
        let mut config = warehouse
            .copied_config()
            .with_target_partitions(1)
            .with_create_default_catalog_and_schema(false);
        // A dynamic filter is state a plan builds as it runs; a kept plan runs many times at
        // once, and a lookup's few rows gain nothing from one.
        config
            .options_mut()
            .optimizer
            .enable_dynamic_filter_pushdown = false;
        let state = SessionStateBuilder::new_from_existing(warehouse.state())
            .with_config(config)
            .build();
        let ctx = SessionContext::new_with_state(state);
        LookupSession {
            state: ctx.state(),
            task: ctx.task_ctx(),
            ctx,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `select` read-only and returns its rows, or Redshift-like error text.
    pub async fn select(&self, select: &BoundSelect) -> Result<ResultSet, String> {
        let kept = self
            .plans
            .lock()
            .expect("plans lock")
            .get(&select.sql)
            .cloned();
        let kept = match kept {
            Some(kept) => kept,
            None => {
                let logical = plan_of(&self.ctx, &select.sql).await?;
                let physical = self.reading_plan(&logical).await;
                let kept = Kept { logical, physical };
                let mut plans = self.plans.lock().expect("plans lock");
                if plans.len() >= KEPT_PLANS {
                    plans.clear();
                }
                plans.insert(select.sql.clone(), kept.clone());
                kept
            }
        };
        if let Some(physical) = kept.physical {
            match self.run_kept(physical, select).await {
                Err(e) if e.contains(OUT_OF_SCOPE) => {
                    // This text's plan cannot be kept; it is bound and planned per lookup.
                    if let Some(kept) = self.plans.lock().expect("plans lock").get_mut(&select.sql)
                    {
                        kept.physical = None;
                    }
                }
                answered => return answered,
            }
        }
        let values = parameter_values(select, &kept.logical)?;
        let bound = kept
            .logical
            .with_param_values(values)
            .map_err(|e| format!("ERROR: {e}"))?;
        // The kept plan is already optimized: only the physical planner runs per lookup.
        let physical = self
            .state
            .query_planner()
            .create_physical_plan(&bound, &self.state)
            .await
            .map_err(|e| format!("ERROR: {e}"))?;
        let schema = physical.schema();
        let stream = datafusion::physical_plan::execute_stream(physical, self.task.clone())
            .map_err(|e| format!("ERROR: {e}"))?;
        rows_of(&schema, stream).await
    }

    /// A physical plan of `logical` in which each placeholder reads its value as the plan
    /// runs, so one plan serves every lookup of the text: a bound plan must be planned anew for
    /// each lookup, and that planning was the largest part of an uncached lookup's work
    /// (docs/BENCHMARKS.md). None if such a plan cannot be made.
    async fn reading_plan(&self, logical: &LogicalPlan) -> Option<Arc<dyn ExecutionPlan>> {
        let read = ScalarUDF::from(LookupParameter::new());
        let reading = logical
            .clone()
            .transform_up_with_subqueries(|node| {
                node.map_expressions(|expr| {
                    expr.transform_up(|expr| match expr {
                        Expr::Placeholder(p) => {
                            let name = p.id.get(1..).unwrap_or_default();
                            let text = read.call(vec![lit(name)]);
                            // A placeholder the planner typed from what it is compared with
                            // reads its text converted to that type, as Redshift converts.
                            Ok(Transformed::yes(
                                match p.field.as_ref().map(|f| f.data_type()) {
                                    None | Some(DataType::Utf8) => text,
                                    Some(typed) => cast(text, typed.clone()),
                                },
                            ))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                })
            })
            .ok()?
            .data;
        self.state
            .query_planner()
            .create_physical_plan(&reading, &self.state)
            .await
            .ok()
    }

    /// Runs a kept physical plan with `select`'s values in scope. Each run gets the plan's
    /// nodes afresh (`reset_plan_states`), so runs at once share no state but the data.
    async fn run_kept(
        &self,
        physical: Arc<dyn ExecutionPlan>,
        select: &BoundSelect,
    ) -> Result<ResultSet, String> {
        let values: HashMap<String, String> = select
            .params
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        let plan = reset_plan_states(physical).map_err(|e| format!("ERROR: {e}"))?;
        let schema = plan.schema();
        VALUES
            .scope(Arc::new(values), async {
                let stream = datafusion::physical_plan::execute_stream(plan, self.task.clone())
                    .map_err(|e| format!("ERROR: {e}"))?;
                rows_of(&schema, stream).await
            })
            .await
    }
}

/// `lookup_parameter('p1')`: the running lookup's value for `:p1`, as text (the Data API's
/// parameters are text; the SELECT's casts type them). Volatile, so no optimizer folds it into
/// a constant of the plan.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LookupParameter {
    signature: Signature,
}

impl LookupParameter {
    fn new() -> LookupParameter {
        LookupParameter {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for LookupParameter {
    fn name(&self) -> &str {
        "lookup_parameter"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let [name] = take_function_args(self.name(), args.args)?;
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) = name else {
            return exec_err!("lookup_parameter takes a parameter's name");
        };
        let value = VALUES
            .try_with(|values| values.get(&name).cloned())
            .map_err(|_| exec_datafusion_err!("{OUT_OF_SCOPE}"))?
            .ok_or_else(|| exec_datafusion_err!("no value for parameter :{name}"))?;
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value))))
    }
}

/// The plan of a text that must be one read-only SELECT.
async fn plan_of(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, String> {
    export_core::sql::parse_query(sql)
        .map_err(|e| format!("ERROR: the statement is not one SELECT: {e}"))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| format!("ERROR: {e}"))?;
    // Analyzed and optimized once, placeholders and all (the SELECT's casts type them); the
    // values bound later are constants in a plan already chosen, as a prepared statement's.
    ctx.state()
        .optimize(frame.logical_plan())
        .map_err(|e| format!("ERROR: {e}"))
}

/// Each value for its named placeholder: text, as the Data API passes it, converted to the
/// type the planner gave the placeholder from what it is compared with or cast to. "SqlParameter"
/// (Amazon Redshift Data API Reference): Redshift "implicitly converts to the proper data type".
fn parameter_values(select: &BoundSelect, plan: &LogicalPlan) -> Result<ParamValues, String> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| format!("ERROR: {e}"))?;
    let values = select
        .params
        .iter()
        .map(|p| {
            let text = ScalarValue::Utf8(Some(p.value.clone()));
            // A placeholder's id is its name after the one character that marks it.
            let typed = types
                .iter()
                .find(|(id, _)| id.get(1..) == Some(p.name.as_str()))
                .and_then(|(_, typed)| typed.clone());
            let value = match typed {
                Some(typed) if typed != DataType::Utf8 => text.cast_to(&typed).map_err(|_| {
                    format!(
                        "ERROR: invalid input syntax for type {typed}: \"{}\"",
                        p.value
                    )
                })?,
                _ => text,
            };
            Ok((p.name.clone(), value))
        })
        .collect::<Result<Vec<(String, ScalarValue)>, String>>()?;
    Ok(ParamValues::from(values))
}

async fn rows_of(
    schema: &Schema,
    mut stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<ResultSet, String> {
    let mut result = ResultSet {
        columns: columns(schema),
        rows: Vec::new(),
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| format!("ERROR: {e}"))?;
        append_rows(&batch, &mut result.rows).map_err(|e| format!("ERROR: {e}"))?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
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
        ctx.sql("CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b''s'), (3, 'c')")
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
        ctx.sql(
            "CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
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
                    sql: "SELECT id, name FROM people WHERE id = CAST(:p1 AS BIGINT) ORDER BY id LIMIT 5"
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
        ctx.sql("CREATE TABLE people (id BIGINT, name VARCHAR) AS VALUES (1, 'a'), (2, 'b''s'), (3, 'c')")
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
}
