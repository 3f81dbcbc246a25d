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
    let plan = export_dialect::plan(ctx, sql, options).await?;
    // Analyzed and optimized once, placeholders and all (the SELECT's casts type them); the
    // values bound later are constants in a plan already chosen, as a prepared statement's.
    ctx.state()
        .optimize(&plan)
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
mod tests;
