//! The SELECTs the endpoint runs with `Parameters` (lookups): each on a task of its own over
//! the warehouse's tables, its rows kept for `GetStatementResult` to hand out in pages.

use super::protocol::{epoch_seconds, not_found, now_ms, text, validation, ApiFault};
use super::DataApi;
use export_core::catalog::{BoundSelect, SqlParameter};
use export_core::ports::{ResultSet, StatementState};
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
/// A SELECT the endpoint ran (or is running): its own record, beside the warehouse's log of
/// UNLOADs, since its rows are kept for `GetStatementResult`.
pub(super) struct Query {
    pub(super) sql: String,
    pub(super) params: Vec<SqlParameter>,
    pub(super) state: StatementState,
    pub(super) result: Option<ResultSet>,
    /// The result's size in bytes (`ResultSize`), worked out once when it finishes.
    pub(super) result_size: i64,
    pub(super) error: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) task: Option<JoinHandle<()>>,
}

/// One value as a `Field` of `GetStatementResult`'s records: `isNull`, `longValue`,
/// `doubleValue`, `booleanValue` or `stringValue` ("Field", Amazon Redshift Data API
/// Reference).
fn field(value: &Value) -> Value {
    match value {
        Value::Null => json!({ "isNull": true }),
        Value::Bool(b) => json!({ "booleanValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "longValue": n }),
        Value::Number(n) => json!({ "doubleValue": n }),
        Value::String(s) => json!({ "stringValue": s }),
        other => json!({ "stringValue": other.to_string() }),
    }
}

impl DataApi {
    /// Starts a SELECT on a task of its own and returns its id at once, as `ExecuteStatement`
    /// does.
    pub(super) fn start_select(&self, sql: &str, params: Vec<SqlParameter>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let select = BoundSelect {
            sql: sql.to_owned(),
            params: params.clone(),
        };
        let delay = *self.select_delay.lock().expect("delay lock");
        let lookups = self.lookups.clone();
        let run = async move {
            tokio::time::sleep(delay).await;
            lookups.select(&select).await
        };
        self.queries.lock().expect("queries lock").insert(
            id.clone(),
            Query {
                sql: sql.to_owned(),
                params,
                state: StatementState::Started,
                result: None,
                result_size: -1,
                error: None,
                created_at: now,
                updated_at: now,
                task: None,
            },
        );
        let queries = self.queries.clone();
        let statement = id.clone();
        let task = tokio::spawn(async move {
            let outcome = run.await;
            let mut queries = queries.lock().expect("queries lock");
            if let Some(query) = queries.get_mut(&statement) {
                if query.state == StatementState::Started {
                    match outcome {
                        Ok(result) => {
                            query.state = StatementState::Finished;
                            query.result_size =
                                serde_json::to_vec(&result.rows).map_or(0, |b| b.len() as i64);
                            query.result = Some(result);
                        }
                        Err(error) => {
                            query.state = StatementState::Failed;
                            query.error = Some(error);
                        }
                    }
                    query.updated_at = now_ms();
                }
            }
        });
        if let Some(query) = self.queries.lock().expect("queries lock").get_mut(&id) {
            query.task = Some(task);
        }
        id
    }

    pub(super) fn describe_select(&self, id: &str) -> Option<Value> {
        let queries = self.queries.lock().expect("queries lock");
        let query = queries.get(id)?;
        let mut output = self.target_of(id);
        let rows = query.result.as_ref().map_or(-1, |r| r.rows.len() as i64);
        let size = query.result_size;
        output.insert("Id".into(), json!(id));
        output.insert("Status".into(), json!(query.state.as_str()));
        output.insert("QueryString".into(), json!(query.sql));
        output.insert(
            "QueryParameters".into(),
            json!(query
                .params
                .iter()
                .map(|p| json!({"name": p.name, "value": p.value}))
                .collect::<Vec<_>>()),
        );
        output.insert("CreatedAt".into(), epoch_seconds(query.created_at));
        output.insert("UpdatedAt".into(), epoch_seconds(query.updated_at));
        output.insert(
            "Duration".into(),
            json!((query.updated_at - query.created_at) * 1_000_000),
        );
        output.insert("ResultRows".into(), json!(rows));
        output.insert("ResultSize".into(), json!(size));
        output.insert("HasResultSet".into(), json!(query.result.is_some()));
        output.insert("RedshiftPid".into(), json!(0));
        output.insert("RedshiftQueryId".into(), json!(0));
        if let Some(error) = &query.error {
            output.insert("Error".into(), json!(error));
        }
        Some(Value::Object(output))
    }

    pub(super) fn cancel_select(&self, id: &str) -> Option<Result<Value, ApiFault>> {
        let mut queries = self.queries.lock().expect("queries lock");
        let query = queries.get_mut(id)?;
        if query.state != StatementState::Started {
            return Some(Err(validation(format!(
                "Could not cancel a query that is already in {} state.",
                query.state.as_str()
            ))));
        }
        if let Some(task) = query.task.take() {
            task.abort();
        }
        query.state = StatementState::Aborted;
        query.error = Some("Query cancelled by the user".into());
        query.updated_at = now_ms();
        Some(Ok(json!({ "Status": true })))
    }

    /// `GetStatementResult`: a page of a finished SELECT's rows, with `NextToken` while more
    /// remain ("GetStatementResult", Amazon Redshift Data API Reference: "If the NextToken
    /// field is empty, all response records have been retrieved").
    pub(super) async fn result(
        &self,
        input: &Map<String, Value>,
        wait: Option<Duration>,
    ) -> Result<Value, ApiFault> {
        let id = self.waited_id(input, wait).await?;
        let queries = self.queries.lock().expect("queries lock");
        let query = queries.get(id).ok_or_else(|| not_found(id))?;
        let result = match (&query.state, &query.result) {
            (StatementState::Finished, Some(result)) => result,
            _ => {
                return Err(validation(format!(
                    "Query {id} has no result to fetch: it is {}.",
                    query.state.as_str()
                )))
            }
        };
        let start = match text(input, "NextToken") {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0 && *n < result.rows.len())
                .ok_or_else(|| validation("The NextToken is not valid."))?,
        };
        let page = self.options.result_page_rows.max(1);
        let end = (start + page).min(result.rows.len());
        let records: Vec<Value> = result.rows[start..end]
            .iter()
            .map(|row| Value::Array(row.iter().map(field).collect()))
            .collect();
        let columns: Vec<Value> = result
            .columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "label": c.name,
                    "typeName": c.type_name,
                    "nullable": 1,
                    "isCaseSensitive": c.type_name == "varchar",
                    "isCurrency": false,
                    "isSigned": matches!(c.type_name.as_str(), "int2" | "int4" | "int8" | "float4" | "float8" | "numeric"),
                    "length": 0,
                    "precision": 0,
                    "scale": 0,
                    "schemaName": "",
                    "tableName": "",
                })
            })
            .collect();
        let mut output = json!({
            "Records": records,
            "ColumnMetadata": columns,
            "TotalNumRows": result.rows.len(),
        });
        if end < result.rows.len() {
            output["NextToken"] = json!(end.to_string());
        }
        Ok(output)
    }
}
