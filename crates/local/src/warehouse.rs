//! The warehouse on Apache DataFusion, spoken to like the Redshift Data API.
//!
//! Statements are recorded in their own SQLite file, so they outlive the process the way a
//! Redshift statement outlives the Lambda that started it: a statement still running when the
//! process stops is run again when it starts. An UNLOAD is parsed exactly as Redshift would
//! get it, its SELECT runs in DataFusion, and the rows are written through the object store
//! port as parts (CSV with header, Parquet or JSON lines; gzip or zstd) plus a manifest in
//! Redshift's format. When a statement ends, a status-change event goes onto the polls queue,
//! as the EventBridge rule does on AWS.

use crate::unload::{parse_unload, UnloadPlan};
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::parquet::arrow::ArrowWriter;
use export_core::archive::SharedBuffer as Buffer;
use export_core::domain::{now_ms, Compression, Format, ObjectRef};
use export_core::messages::{PollMessage, StatementEvent};
use export_core::ports::{
    ObjectStore, PortError, PortResult, QueueName, QueueSender, StatementRequest, StatementState,
    StatementStatus, Upload, Warehouse,
};
use futures::StreamExt;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS statements (
    id           TEXT PRIMARY KEY,
    client_token TEXT UNIQUE,
    name         TEXT,
    sql          TEXT NOT NULL,
    state        TEXT NOT NULL,
    rows         INTEGER,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    with_event   INTEGER NOT NULL DEFAULT 1
);";

const UNFINISHED: &str = "('SUBMITTED', 'PICKED', 'STARTED')";

pub struct DataFusionWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: SessionContext,
    db: Mutex<Connection>,
    objects: Arc<dyn ObjectStore>,
    /// Where status-change events go; the polls queue.
    events: Arc<dyn QueueSender>,
    running: Mutex<HashMap<String, AbortHandle>>,
    /// Time a statement waits before it runs, to stand in for a busy cluster.
    queue_delay: Duration,
}

impl DataFusionWarehouse {
    /// Opens the statement log at `statements_db` over a session whose tables are loaded.
    pub fn open(
        ctx: SessionContext,
        statements_db: &Path,
        objects: Arc<dyn ObjectStore>,
        events: Arc<dyn QueueSender>,
        queue_delay: Duration,
    ) -> anyhow::Result<DataFusionWarehouse> {
        let conn = Connection::open(statements_db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Statement logs written before `with_event` existed: every statement emitted events.
        let has_with_event = conn
            .prepare("SELECT 1 FROM pragma_table_info('statements') WHERE name = 'with_event'")?
            .exists([])?;
        if !has_with_event {
            conn.execute_batch(
                "ALTER TABLE statements ADD COLUMN with_event INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        Ok(DataFusionWarehouse {
            inner: Arc::new(Inner {
                ctx,
                db: Mutex::new(conn),
                objects,
                events,
                running: Mutex::new(HashMap::new()),
                queue_delay,
            }),
        })
    }

    /// Runs again every statement a previous process left unfinished.
    pub fn resume_unfinished(&self) -> PortResult<usize> {
        let ids: Vec<String> = self.inner.with_db(|db| {
            db.prepare(&format!(
                "SELECT id FROM statements WHERE state IN {UNFINISHED} ORDER BY created_at"
            ))?
            .query_map([], |r| r.get(0))?
            .collect()
        })?;
        for id in &ids {
            tracing::info!(statement_id = %id, "resuming a statement left unfinished");
            Inner::spawn(&self.inner, id.clone());
        }
        Ok(ids.len())
    }

    /// Stops every running statement without recording an outcome, as a crash would; they are
    /// resumed by the next [`Self::resume_unfinished`].
    pub fn halt(&self) {
        for (_, handle) in self.inner.running.lock().expect("running lock").drain() {
            handle.abort();
        }
    }
}

impl Drop for DataFusionWarehouse {
    fn drop(&mut self) {
        self.halt();
    }
}

fn db_error(e: rusqlite::Error) -> PortError {
    PortError::Unavailable(format!("statement log: {e}"))
}

impl Inner {
    fn with_db<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> PortResult<T> {
        let db = self
            .db
            .lock()
            .map_err(|_| PortError::Unavailable("statement log lock poisoned".into()))?;
        f(&db).map_err(db_error)
    }

    fn spawn(this: &Arc<Inner>, id: String) {
        // Registered under the lock the task takes to deregister itself, so a statement that
        // ends at once cannot leave a stale entry behind.
        let mut running = this.running.lock().expect("running lock");
        let inner = Arc::clone(this);
        let task_id = id.clone();
        let handle = tokio::spawn(async move { inner.run(&task_id).await });
        running.insert(id, handle.abort_handle());
    }

    /// Moves an unfinished statement to `state`; false if it had already ended.
    fn set_state(
        &self,
        id: &str,
        state: StatementState,
        rows: Option<u64>,
        error: Option<&str>,
    ) -> PortResult<bool> {
        self.with_db(|db| {
            db.execute(
                &format!("UPDATE statements SET state = ?2, rows = COALESCE(?3, rows), error = ?4, updated_at = ?5 WHERE id = ?1 AND state IN {UNFINISHED}"),
                params![id, state.as_str(), rows.map(|r| r as i64), error, now_ms()],
            )
            .map(|n| n == 1)
        })
    }

    async fn run(&self, id: &str) {
        if !self.queue_delay.is_zero() {
            tokio::time::sleep(self.queue_delay).await;
        }
        let (outcome, name) = match self.load_statement(id) {
            Ok((sql, name)) => {
                let _ = self.set_state(id, StatementState::Started, None, None);
                (self.unload(&sql).await, name)
            }
            Err(e) => (Err(e.to_string()), None),
        };
        self.running.lock().expect("running lock").remove(id);
        let (state, rows, error) = match outcome {
            Ok(rows) => (StatementState::Finished, Some(rows), None),
            Err(message) => (StatementState::Failed, None, Some(message)),
        };
        match self.set_state(id, state, rows, error.as_deref()) {
            Ok(true) => {
                tracing::info!(
                    request_id = name.as_deref().unwrap_or(""),
                    statement_id = id,
                    state = state.as_str(),
                    rows,
                    error = error.as_deref().unwrap_or(""),
                    "statement ended"
                );
                self.emit(id, state, rows).await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(statement_id = id, error = %e, "could not record the statement's end")
            }
        }
    }

    /// The statement's text and name (the request id).
    fn load_statement(&self, id: &str) -> PortResult<(String, Option<String>)> {
        self.with_db(|db| {
            db.query_row(
                "SELECT sql, name FROM statements WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// Puts the status-change event on the polls queue, shaped as EventBridge delivers it,
    /// if the statement asked for events.
    async fn emit(&self, id: &str, state: StatementState, rows: Option<u64>) {
        let Ok((name, true)) = self.with_db(|db| {
            db.query_row(
                "SELECT name, with_event FROM statements WHERE id = ?1",
                params![id],
                |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, bool>(1)?)),
            )
        }) else {
            return;
        };
        let event = PollMessage::StatementEvent(StatementEvent {
            statement_id: id.to_owned(),
            statement_name: name,
            state: state.as_str().to_owned(),
            rows: rows.map(|r| r as i64),
        });
        if let Err(e) = self
            .events
            .send(QueueName::Polls, &event.to_body(), Duration::ZERO)
            .await
        {
            tracing::warn!(statement_id = id, error = %e, "could not emit the statement event; the poller's own polls will notice");
        }
    }

    /// Runs an UNLOAD: returns the rows written, or Redshift-like error text.
    async fn unload(&self, sql: &str) -> Result<u64, String> {
        let plan = parse_unload(sql)?;
        export_core::sql::parse_query(&plan.query)
            .map_err(|e| format!("ERROR: the UNLOAD query is not a SELECT: {e}"))?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(&plan.query, options)
            .await
            .map_err(|e| format!("ERROR: {e}"))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|e| format!("ERROR: {e}"))?;
        let mut parts = PartWriter::new(self.objects.as_ref(), &plan, schema.clone());
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| format!("ERROR: {e}"))?;
            parts
                .write(&batch)
                .await
                .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?;
        }
        let entries = parts
            .finish()
            .await
            .map_err(|e| format!("ERROR: writing to S3 failed: {e}"))?;
        let rows = entries.iter().map(|e| e.rows).sum();
        if let Some(verbose) = plan.manifest {
            let manifest = manifest_json(&entries, &schema, verbose);
            let object =
                ObjectRef::new(&plan.target.bucket, format!("{}manifest", plan.target.key));
            self.objects
                .put(
                    &object,
                    Bytes::from(manifest.to_string()),
                    "application/json",
                )
                .await
                .map_err(|e| format!("ERROR: writing the manifest failed: {e}"))?;
        }
        Ok(rows)
    }
}

/// A statement as the log records it, for a Data API `DescribeStatement`.
#[derive(Clone, Debug)]
pub struct StatementDetails {
    pub sql: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DataFusionWarehouse {
    /// Starts `request` (or returns the statement its client token already started);
    /// `with_event` says whether its end is announced on the events queue.
    pub async fn start(&self, request: &StatementRequest, with_event: bool) -> PortResult<String> {
        let inner = &self.inner;
        let existing: Option<(String, String)> = inner.with_db(|db| {
            db.query_row(
                "SELECT id, sql FROM statements WHERE client_token = ?1",
                params![request.client_token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        if let Some((id, sql)) = existing {
            if sql != request.sql {
                return Err(PortError::Rejected(format!("IdempotentParameterMismatch: client token {} was used with a different statement", request.client_token)));
            }
            return Ok(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        inner.with_db(|db| {
            db.execute(
                "INSERT INTO statements (id, client_token, name, sql, state, created_at, updated_at, with_event) VALUES (?1, ?2, ?3, ?4, 'SUBMITTED', ?5, ?5, ?6)",
                params![id, request.client_token, request.name, request.sql, now, with_event],
            )
        })?;
        Inner::spawn(inner, id.clone());
        Ok(id)
    }

    pub fn details(&self, statement_id: &str) -> PortResult<Option<StatementDetails>> {
        self.inner.with_db(|db| {
            db.query_row(
                "SELECT sql, name, created_at, updated_at FROM statements WHERE id = ?1",
                params![statement_id],
                |r| {
                    Ok(StatementDetails {
                        sql: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }
}

#[async_trait]
impl Warehouse for DataFusionWarehouse {
    async fn execute(&self, request: &StatementRequest) -> PortResult<String> {
        self.start(request, true).await
    }

    async fn describe(&self, statement_id: &str) -> PortResult<StatementStatus> {
        let row: Option<(String, Option<i64>, Option<String>)> = self.inner.with_db(|db| {
            db.query_row(
                "SELECT state, rows, error FROM statements WHERE id = ?1",
                params![statement_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let (state, rows, error) =
            row.ok_or_else(|| PortError::NotFound(format!("statement {statement_id}")))?;
        Ok(StatementStatus {
            id: statement_id.to_owned(),
            state: StatementState::parse(&state)
                .ok_or_else(|| PortError::Rejected(format!("unknown state {state}")))?,
            rows: rows.map(|r| r as u64),
            error,
        })
    }

    async fn cancel(&self, statement_id: &str) -> PortResult<bool> {
        self.describe(statement_id).await?;
        if let Some(handle) = self
            .inner
            .running
            .lock()
            .expect("running lock")
            .remove(statement_id)
        {
            handle.abort();
        }
        let aborted = self.inner.set_state(
            statement_id,
            StatementState::Aborted,
            None,
            Some("Query cancelled by the user"),
        )?;
        if aborted {
            tracing::info!(statement_id, "statement aborted");
            self.inner
                .emit(statement_id, StatementState::Aborted, None)
                .await;
        }
        Ok(aborted)
    }
}

/// A written part, for the manifest.
struct PartEntry {
    url: String,
    bytes: u64,
    rows: u64,
}

/// The text formats' compression, as a `Write` in front of the buffer.
enum Compressor {
    Plain(Buffer),
    Gzip(flate2::write::GzEncoder<Buffer>),
    Zstd(zstd::stream::write::Encoder<'static, Buffer>),
}

impl Compressor {
    fn new(compression: Compression, buffer: Buffer) -> std::io::Result<Compressor> {
        Ok(match compression {
            Compression::None => Compressor::Plain(buffer),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                buffer,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(buffer, 3)?),
        })
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Compressor::Plain(_) => Ok(()),
            Compressor::Gzip(gz) => gz.finish().map(drop),
            Compressor::Zstd(z) => z.finish().map(drop),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Compressor::Plain(b) => b.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One per open part, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Encoder {
    Text(Compressor),
    Parquet(Box<ArrowWriter<Buffer>>),
}

struct OpenPart {
    object: ObjectRef,
    upload: Box<dyn Upload>,
    buffer: Buffer,
    encoder: Encoder,
    rows: u64,
    bytes: u64,
}

/// Splits the result into parts of at most about `max_file_size` bytes, as UNLOAD does.
struct PartWriter<'a> {
    objects: &'a dyn ObjectStore,
    plan: &'a UnloadPlan,
    schema: SchemaRef,
    open: Option<OpenPart>,
    written: Vec<PartEntry>,
}

fn io(e: impl std::fmt::Display) -> PortError {
    PortError::Rejected(e.to_string())
}

impl<'a> PartWriter<'a> {
    fn new(objects: &'a dyn ObjectStore, plan: &'a UnloadPlan, schema: SchemaRef) -> Self {
        PartWriter {
            objects,
            plan,
            schema,
            open: None,
            written: Vec::new(),
        }
    }

    fn part_key(&self, index: usize) -> String {
        let extension = match self.plan.format {
            Format::Parquet => ".parquet",
            _ => "",
        };
        format!(
            "{}0000_part_{index:02}{extension}{}",
            self.plan.target.key,
            self.plan.compression.suffix()
        )
    }

    async fn open_part(&mut self) -> PortResult<()> {
        let object = ObjectRef::new(&self.plan.target.bucket, self.part_key(self.written.len()));
        let upload = self
            .objects
            .start_upload(&object, "application/octet-stream")
            .await?;
        let buffer = Buffer::default();
        let encoder = match self.plan.format {
            Format::Parquet => Encoder::Parquet(Box::new(
                ArrowWriter::try_new(buffer.clone(), self.schema.clone(), None).map_err(io)?,
            )),
            _ => Encoder::Text(Compressor::new(self.plan.compression, buffer.clone()).map_err(io)?),
        };
        self.open = Some(OpenPart {
            object,
            upload,
            buffer,
            encoder,
            rows: 0,
            bytes: 0,
        });
        Ok(())
    }

    async fn write(&mut self, batch: &RecordBatch) -> PortResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open_part().await?;
        }
        let header = self.plan.header;
        let part = self.open.as_mut().expect("a part is open");
        match &mut part.encoder {
            Encoder::Text(out) => match self.plan.format {
                Format::Csv => {
                    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(header && part.rows == 0)
                        .build(out);
                    writer.write(batch).map_err(io)?;
                }
                _ => {
                    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
                    writer.write(batch).map_err(io)?;
                    writer.finish().map_err(io)?;
                }
            },
            Encoder::Parquet(writer) => writer.write(batch).map_err(io)?,
        }
        part.rows += batch.num_rows() as u64;
        let pending = part.buffer.take();
        part.bytes += pending.len() as u64;
        if !pending.is_empty() {
            part.upload.write(Bytes::from(pending)).await?;
        }
        if part.bytes >= self.plan.max_file_size {
            self.close_part().await?;
        }
        Ok(())
    }

    async fn close_part(&mut self) -> PortResult<()> {
        let Some(mut part) = self.open.take() else {
            return Ok(());
        };
        match part.encoder {
            Encoder::Text(out) => out.finish().map_err(io)?,
            Encoder::Parquet(writer) => drop(writer.close().map_err(io)?),
        }
        let rest = part.buffer.take();
        if !rest.is_empty() {
            part.upload.write(Bytes::from(rest)).await?;
        }
        let bytes = part.upload.complete().await?;
        self.written.push(PartEntry {
            url: part.object.s3_url(),
            bytes,
            rows: part.rows,
        });
        Ok(())
    }

    async fn finish(mut self) -> PortResult<Vec<PartEntry>> {
        if self.open.is_none() && self.written.is_empty() {
            // No rows: still one part (a header alone, an empty Parquet file), as callers
            // expect a file to open.
            self.open_part().await?;
            let part = self.open.as_mut().expect("just opened");
            if let (Encoder::Text(out), Format::Csv, true) =
                (&mut part.encoder, self.plan.format, self.plan.header)
            {
                let empty = RecordBatch::new_empty(self.schema.clone());
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out)
                    .write(&empty)
                    .map_err(io)?;
            }
        }
        self.close_part().await?;
        Ok(self.written)
    }
}

/// Redshift's name for an Arrow type, for the verbose manifest's schema.
fn redshift_type(data_type: &DataType) -> serde_json::Value {
    match data_type {
        DataType::Int16 => json!({"base": "smallint"}),
        DataType::Int32 => json!({"base": "integer"}),
        DataType::Int64 => json!({"base": "bigint"}),
        DataType::Float32 => json!({"base": "real"}),
        DataType::Float64 => json!({"base": "double precision"}),
        DataType::Boolean => json!({"base": "boolean"}),
        DataType::Date32 | DataType::Date64 => json!({"base": "date"}),
        DataType::Timestamp(_, None) => json!({"base": "timestamp without time zone"}),
        DataType::Timestamp(_, Some(_)) => json!({"base": "timestamp with time zone"}),
        DataType::Decimal128(p, s) => json!({"base": "numeric", "precision": p, "scale": s}),
        _ => json!({"base": "character varying", "max_length": 65535}),
    }
}

fn manifest_json(entries: &[PartEntry], schema: &SchemaRef, verbose: bool) -> serde_json::Value {
    if !verbose {
        return json!({ "entries": entries.iter().map(|e| json!({"url": e.url})).collect::<Vec<_>>() });
    }
    json!({
        "entries": entries.iter().map(|e| json!({
            "url": e.url,
            "meta": { "content_length": e.bytes, "record_count": e.rows }
        })).collect::<Vec<_>>(),
        "schema": {
            "elements": schema.fields().iter().map(|f| json!({"name": f.name(), "type": redshift_type(f.data_type())})).collect::<Vec<_>>()
        },
        "meta": {
            "content_length": entries.iter().map(|e| e.bytes).sum::<u64>(),
            "record_count": entries.iter().map(|e| e.rows).sum::<u64>(),
        },
        "author": { "name": "Amazon Redshift", "version": "1.0.0" }
    })
}

/// A DataFusion session that parses SQL as Redshift does (backslash escapes in literals).
pub fn redshift_session() -> anyhow::Result<SessionContext> {
    let mut config = SessionConfig::new().with_create_default_catalog_and_schema(true);
    config.options_mut().sql_parser.dialect = "redshift".parse()?;
    Ok(SessionContext::new_with_config(config))
}
