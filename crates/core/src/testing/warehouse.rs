use super::Faults;
use crate::catalog::BoundSelect;
use crate::ports::{
    PortError, PortResult, ResultSet, SelectOutcome, StatementRequest, StatementState,
    StatementStatus, Warehouse,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake answers a SELECT.
pub type SelectAnswer = Arc<dyn Fn(&BoundSelect) -> SelectOutcome + Send + Sync>;

/// A warehouse whose statements move only when the test moves them. Like the Data API, a
/// client token names one statement for good: the same token with the same text returns it
/// again, with other text is refused.
#[derive(Default)]
pub struct FakeWarehouse {
    state: Mutex<State>,
    pub faults: Faults,
}

#[derive(Default)]
struct State {
    statements: HashMap<String, Statement>,
    by_token: HashMap<String, String>,
    executions: Vec<StatementRequest>,
    selects: Vec<BoundSelect>,
    answer: Option<SelectAnswer>,
    /// How long a SELECT takes (on tokio's clock, so a paused test can skip it).
    select_time: Duration,
    /// While set, SELECTs wait here until the test lets them finish.
    held: Option<Arc<tokio::sync::Semaphore>>,
}

struct Statement {
    request: StatementRequest,
    status: StatementStatus,
}

impl FakeWarehouse {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("warehouse lock")
    }

    /// Every `execute` call answered, in order.
    pub fn executions(&self) -> Vec<StatementRequest> {
        self.state().executions.clone()
    }

    /// How many distinct statements were started.
    pub fn statement_count(&self) -> usize {
        self.state().statements.len()
    }

    /// The statement started under `name` (the request id), if any.
    pub fn statement_named(&self, name: &str) -> Option<String> {
        self.state()
            .statements
            .iter()
            .find(|(_, s)| s.request.name == name)
            .map(|(id, _)| id.clone())
    }

    /// The name a statement was started under.
    pub fn name_of(&self, statement_id: &str) -> Option<String> {
        self.state()
            .statements
            .get(statement_id)
            .map(|s| s.request.name.clone())
    }

    pub fn sql(&self, statement_id: &str) -> Option<String> {
        self.state()
            .statements
            .get(statement_id)
            .map(|s| s.request.sql.clone())
    }

    /// Moves a statement on, as the warehouse would.
    pub fn set_state(
        &self,
        statement_id: &str,
        state: StatementState,
        rows: Option<u64>,
        error: Option<&str>,
    ) {
        let mut all = self.state();
        let statement = all
            .statements
            .get_mut(statement_id)
            .unwrap_or_else(|| panic!("no statement {statement_id}"));
        statement.status.state = state;
        statement.status.rows = rows;
        statement.status.error = error.map(str::to_owned);
    }

    /// Answers every SELECT from now on with `answer` (by default: no rows, no columns).
    pub fn answer_selects(
        &self,
        answer: impl Fn(&BoundSelect) -> SelectOutcome + Send + Sync + 'static,
    ) {
        self.state().answer = Some(Arc::new(answer));
    }

    /// Makes each SELECT take `time`, as far as its deadline is concerned: one that takes
    /// longer than the lookup may wait times out, at once; no test waits it out.
    pub fn set_select_time(&self, time: Duration) {
        self.state().select_time = time;
    }

    /// Holds every SELECT from now on until [`Self::release_selects`].
    pub fn hold_selects(&self) {
        self.state().held = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets the held SELECTs (and any later ones) finish.
    pub fn release_selects(&self) {
        if let Some(gate) = self.state().held.take() {
            gate.close();
        }
    }

    /// Every SELECT run, in order.
    pub fn selects(&self) -> Vec<BoundSelect> {
        self.state().selects.clone()
    }

    /// Forgets a statement, as the Data API does after its retention.
    pub fn forget(&self, statement_id: &str) {
        self.state().statements.remove(statement_id);
    }
}

fn finished(state: StatementState) -> bool {
    matches!(
        state,
        StatementState::Finished | StatementState::Failed | StatementState::Aborted
    )
}

#[async_trait]
impl Warehouse for FakeWarehouse {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        super::interleave().await;
        self.faults.check("execute")?;
        let mut state = self.state();
        state.executions.push(request.clone());
        if let Some(id) = state.by_token.get(&request.client_token).cloned() {
            return match state.statements.get(&id) {
                Some(s) if s.request.sql == request.sql => Ok(id),
                _ => Err(PortError::Rejected(
                    "IdempotentParameterMismatch: the client token names another statement".into(),
                )),
            };
        }
        let id = format!("statement-{}", state.statements.len() + 1);
        state
            .by_token
            .insert(request.client_token.clone(), id.clone());
        state.statements.insert(
            id.clone(),
            Statement {
                request: request.clone(),
                status: StatementStatus {
                    id: id.clone(),
                    state: StatementState::Submitted,
                    rows: None,
                    error: None,
                },
            },
        );
        Ok(id)
    }

    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        super::interleave().await;
        self.faults.check("describe")?;
        self.state()
            .statements
            .get(statement_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| PortError::NotFound(format!("statement {statement_id}")))
    }

    async fn cancel(&self, statement_id: &str) -> PortResult<bool> {
        super::interleave().await;
        self.faults.check("cancel")?;
        let mut state = self.state();
        let statement = state
            .statements
            .get_mut(statement_id)
            .ok_or_else(|| PortError::NotFound(format!("statement {statement_id}")))?;
        if finished(statement.status.state) {
            return Ok(false);
        }
        statement.status.state = StatementState::Aborted;
        statement.status.error = Some("Query cancelled by the user".into());
        Ok(true)
    }

    async fn select(&self, select: &BoundSelect, timeout: Duration) -> PortResult<SelectOutcome> {
        super::interleave().await;
        self.faults.check("select")?;
        let (answer, time, number, held) = {
            let mut state = self.state();
            state.selects.push(select.clone());
            let held = state.held.clone();
            (
                state.answer.clone(),
                state.select_time,
                state.selects.len(),
                held,
            )
        };
        if let Some(gate) = held {
            // Closed on release: the wait ends then, with an error that means "go on".
            let _ = gate.acquire().await;
        }
        let statement_id = format!("select-{number}");
        // The statement's time is pretended, not waited out: one longer than the deadline
        // answers as the adapters do when the deadline passes (they cancel it), at once.
        if time > timeout {
            return Ok(SelectOutcome::TimedOut { statement_id });
        }
        Ok(match answer {
            Some(answer) => answer(select),
            None => SelectOutcome::Rows(ResultSet::default()),
        })
    }
}
