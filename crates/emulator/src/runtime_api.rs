//! The Lambda runtime API (the HTTP interface a `provided.al2023` bootstrap polls), enough to
//! start a function binary, see when its init is done, and hand it events one at a time.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex, Notify};
use tokio::task::JoinHandle;

type Outcome = Result<Value, String>;

struct Shared {
    events: AsyncMutex<mpsc::UnboundedReceiver<(String, Bytes)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// When the function first asked for an event: its init was over.
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
    init_error: Mutex<Option<String>>,
    /// The function's timeout: each invocation's deadline is this long after it is handed over.
    timeout: std::time::Duration,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<(String, Bytes)>,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// A runtime API for a function with Lambda's longest timeout, 900 s.
    pub async fn start() -> anyhow::Result<RuntimeApi> {
        RuntimeApi::with_timeout(std::time::Duration::from_secs(900)).await
    }

    /// A runtime API whose invocations each end `timeout` after they are handed over: the
    /// `Lambda-Runtime-Deadline-Ms` header, "the date that the function times out in Unix time
    /// milliseconds" ("Using the Lambda runtime API for custom runtimes").
    pub async fn with_timeout(timeout: std::time::Duration) -> anyhow::Result<RuntimeApi> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: AsyncMutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
            polled: Notify::new(),
            init_error: Mutex::new(None),
            timeout,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            sender,
            server,
        })
    }

    /// Waits until the function first polls for an event (its init is over) and returns when
    /// that was; an error if it reported an init error instead.
    pub async fn wait_for_first_poll(&self) -> Result<Instant, String> {
        loop {
            let notified = self.shared.polled.notified();
            if let Some(error) = self.shared.init_error.lock().unwrap().clone() {
                return Err(error);
            }
            if let Some(at) = *self.shared.first_poll.lock().unwrap() {
                return Ok(at);
            }
            notified.await;
        }
    }

    /// Hands the function one event and waits for its answer.
    pub async fn invoke(&self, payload: &Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        self.sender
            .send((id, Bytes::from(payload.to_string())))
            .map_err(|_| "runtime API stopped".to_owned())?;
        rx.await
            .map_err(|_| "the function never answered".to_owned())?
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    shared.polled.notify_waiters();
    let Some((id, body)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = (epoch_ms() + shared.timeout.as_millis()).to_string();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        headers.insert(name, HeaderValue::from_str(value).expect("header value"));
    };
    put("lambda-runtime-aws-request-id", &id);
    put("lambda-runtime-deadline-ms", &deadline);
    put(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:export-bench",
    );
    put(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0",
    );
    put("content-type", "application/json");
    (headers, body).into_response()
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    settle(&shared, &id, Ok(value))
}

async fn fail(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    settle(
        &shared,
        &id,
        Err(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    shared.polled.notify_waiters();
    StatusCode::ACCEPTED
}
