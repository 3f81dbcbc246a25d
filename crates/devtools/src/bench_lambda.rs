//! `export-devtools bench-lambda`: the four function binaries as Lambda runs them — each
//! started cold against a local Lambda runtime API, with moto and the project's Data API
//! endpoint behind it — timed from exec to the first poll for an event (init), and measured
//! for peak resident memory after serving a real event. Then the archive step on a
//! multi-part export of more than 1 GiB, in the poller binary, for throughput and peak memory
//! against a smaller export of the same kind.

use anyhow::{bail, Context};
use export_api::{Accepted, JobView};
use export_aws::dynamodb::DynamoControlTable;
use export_core::domain::{Job, JobStatus};
use export_core::ports::ControlTable;
use export_emulator::events::sample;
use export_emulator::runtime_api::RuntimeApi;
use export_emulator::{Emulator, EmulatorOptions, Moto};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const FUNCTIONS: [&str; 4] = ["receiver", "status", "processor", "poller"];

#[derive(clap::Args, Clone, Debug)]
pub struct LambdaBenchOptions {
    /// Where `cargo lambda build --release` put the functions (`<dir>/<name>/bootstrap`).
    #[arg(long, default_value = "target/lambda")]
    pub bootstrap_dir: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// TPC-H scale of the warehouse; the large archive is the whole `shipped_lineitems`
    /// export at this scale (about 0.47 GiB of CSV per unit).
    #[arg(long, default_value_t = 2.5)]
    pub scale: f64,
    /// Generated tables and the functions' logs.
    #[arg(long, default_value = ".export-bench-lambda")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "sql")]
    pub sql_dir: PathBuf,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The size of the export packaged every way, side by side (GiB).
    #[arg(long, default_value_t = 5.0)]
    pub packaging_gib: f64,
    /// Run the packaging section alone.
    #[arg(long)]
    pub packaging_only: bool,
    /// Pairs of uninterrupted and resumed zips measured alternately for the cost of resuming
    /// (one run's difference is within this machine's noise; the median of several is not).
    #[arg(long, default_value_t = 3)]
    pub resume_pairs: usize,
}

/// One function process, started cold against its own runtime API.
pub struct FunctionProcess {
    name: &'static str,
    child: tokio::process::Child,
    api: RuntimeApi,
    init: Duration,
}

impl FunctionProcess {
    async fn start(
        name: &'static str,
        options: &LambdaBenchOptions,
        emulator: &Emulator,
    ) -> anyhow::Result<FunctionProcess> {
        FunctionProcess::start_with(name, options, emulator, Duration::from_secs(900), &[]).await
    }

    /// Started with a timeout of its own (each invocation's deadline) and `extra` variables.
    pub async fn start_with(
        name: &'static str,
        options: &LambdaBenchOptions,
        emulator: &Emulator,
        timeout: Duration,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<FunctionProcess> {
        let bootstrap = options.bootstrap_dir.join(name).join("bootstrap");
        let api = RuntimeApi::with_timeout(timeout).await?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(options.data_dir.join(format!("{name}.log")))?;
        let started = Instant::now();
        let child = tokio::process::Command::new(&bootstrap)
            .env_clear()
            .envs(emulator.process_variables())
            .envs(extra.iter().copied())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("export-{name}"))
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/export-{name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            // As deployed: JSON lines at info, here into `<data-dir>/<function>.log`.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bootstrap.display()))?;
        let first_poll = tokio::time::timeout(Duration::from_secs(30), api.wait_for_first_poll())
            .await
            .with_context(|| format!("{name} never polled for an event"))?
            .map_err(|e| anyhow::anyhow!("{name} failed its init: {e}"))?;
        Ok(FunctionProcess {
            name,
            child,
            api,
            init: first_poll.duration_since(started),
        })
    }

    pub async fn invoke(&self, event: &Value) -> anyhow::Result<Value> {
        tokio::time::timeout(Duration::from_secs(900), self.api.invoke(event))
            .await
            .with_context(|| format!("{} did not answer", self.name))?
            .map_err(|e| anyhow::anyhow!("{} failed: {e}", self.name))
    }

    /// The process's peak resident memory so far, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the function has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc status")?;
        Ok(kib / 1024.0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `POST /exports` with `body`, under a fresh idempotency key.
fn post_event(body: &Value) -> anyhow::Result<Value> {
    let mut event = sample("receiver-post-exports.json", "")?;
    event["body"] = Value::String(body.to_string());
    let key = fresh_idempotency_key();
    event["headers"]["Idempotency-Key"] = json!(key);
    event["multiValueHeaders"]["Idempotency-Key"] = json!([key]);
    Ok(event)
}

fn fresh_idempotency_key() -> String {
    format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )
}

/// A function's API Gateway answer, read as the route's answer type.
fn api_body<T: serde::de::DeserializeOwned>(reply: &Value) -> anyhow::Result<T> {
    let status = reply["statusCode"].as_u64().unwrap_or(0);
    let body = reply["body"].as_str().unwrap_or("null");
    if !(200..400).contains(&status) {
        bail!("the API answered {status}: {body}");
    }
    serde_json::from_str(body).with_context(|| format!("the API answered {status}: {body}"))
}

pub fn no_failures(reply: &Value) -> anyhow::Result<()> {
    match reply["batchItemFailures"].as_array() {
        Some(failures) if failures.is_empty() => Ok(()),
        _ => bail!("the batch reported failures: {reply}"),
    }
}

struct Measures {
    init_ms: Vec<f64>,
    peak_mib: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

async fn wait_for_statement(
    control: &DynamoControlTable,
    emulator: &Emulator,
    request_id: &str,
) -> anyhow::Result<Job> {
    let job = control
        .get_job(request_id)
        .await?
        .context("the job exists")?;
    let statement = job
        .statement_id
        .clone()
        .context("the processor started a statement")?;
    loop {
        let described = emulator
            .clients
            .redshift
            .describe_statement()
            .id(&statement)
            .send()
            .await?;
        match described.status().map(|s| s.as_str()) {
            Some("FINISHED") => return Ok(job),
            Some("FAILED") | Some("ABORTED") => {
                bail!("statement {statement} ended: {:?}", described.error())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Starts each function in turn, cold, and has it serve one step of a real export.
async fn one_export(
    options: &LambdaBenchOptions,
    emulator: &Emulator,
    control: &DynamoControlTable,
    body: &Value,
    measures: &mut [Measures; 4],
) -> anyhow::Result<(Job, Duration)> {
    let receiver = FunctionProcess::start("receiver", options, emulator).await?;
    let accepted: Accepted = api_body(&receiver.invoke(&post_event(body)?).await?)?;
    let request_id = accepted.request_id;
    let processor = FunctionProcess::start("processor", options, emulator).await?;
    no_failures(
        &processor
            .invoke(&sample("processor-sqs-requests.json", &request_id)?)
            .await?,
    )?;
    wait_for_statement(control, emulator, &request_id).await?;
    let poller = FunctionProcess::start("poller", options, emulator).await?;
    let packaging = Instant::now();
    no_failures(
        &poller
            .invoke(&sample("poller-sqs-follow-up.json", &request_id)?)
            .await?,
    )?;
    let packaging = packaging.elapsed();
    let status = FunctionProcess::start("status", options, emulator).await?;
    let reply: JobView = api_body(
        &status
            .invoke(&sample("status-get-export.json", &request_id)?)
            .await?,
    )?;
    if reply.summary.status != JobStatus::Succeeded {
        bail!("the export did not succeed: {reply:?}");
    }
    for (i, function) in [receiver, status, processor, poller]
        .into_iter()
        .enumerate()
    {
        measures[i]
            .init_ms
            .push(function.init.as_secs_f64() * 1000.0);
        measures[i].peak_mib.push(function.peak_rss_mib()?);
        function.stop().await;
    }
    let job = control
        .get_job(&request_id)
        .await?
        .context("the job exists")?;
    anyhow::ensure!(
        job.status == JobStatus::Succeeded,
        "job {request_id} is {}",
        job.status
    );
    Ok((job, packaging))
}

pub async fn run(options: LambdaBenchOptions) -> anyhow::Result<()> {
    for name in FUNCTIONS {
        let path = options.bootstrap_dir.join(name).join("bootstrap");
        if !path.exists() {
            bail!("{} is missing: run `cargo lambda build --release -p receiver -p processor -p poller -p status` first", path.display());
        }
    }
    std::fs::create_dir_all(&options.data_dir)?;
    let moto = Moto::start()?;
    let prefix = format!("bench{}", std::process::id());
    let mut emulator_options = EmulatorOptions::new(
        &prefix,
        options.data_dir.join("warehouse"),
        options.sql_dir.clone(),
    );
    emulator_options.data_api.scale = options.scale;
    emulator_options.visibility_timeout = Duration::from_secs(900);
    let emulator = Emulator::start(&moto.endpoint, emulator_options).await?;
    let control = DynamoControlTable::new(
        emulator.clients.dynamodb.clone(),
        &emulator.table,
        Duration::from_secs(3600),
    );

    let mut report = String::new();
    let sizes: Vec<(&str, u64)> = FUNCTIONS
        .iter()
        .map(|name| {
            (
                *name,
                std::fs::metadata(options.bootstrap_dir.join(name).join("bootstrap"))
                    .map(|m| m.len())
                    .unwrap_or(0),
            )
        })
        .collect();

    if options.packaging_only {
        report.push_str(&crate::bench_packaging::run(&options, &emulator, &control).await?);
        println!("{report}");
        if let Some(path) = &options.report {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    // 1. Cold starts on a one-row export.
    let mut small: [Measures; 4] = std::array::from_fn(|_| Measures {
        init_ms: Vec::new(),
        peak_mib: Vec::new(),
    });
    let one_row = json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}});
    for _ in 0..options.runs {
        one_export(&options, &emulator, &control, &one_row, &mut small).await?;
    }
    report.push_str(&format!(
        "Cold start of each function against a local Lambda runtime API, {} runs, serving one step of a one-row export:\n\n| function | binary | init p50 | init max | peak RSS p50 | peak RSS max |\n|---|---|---|---|---|---|\n",
        options.runs
    ));
    for (i, (name, size)) in sizes.iter().enumerate() {
        report.push_str(&format!(
            "| {name} | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB |\n",
            *size as f64 / (1024.0 * 1024.0),
            median(&small[i].init_ms),
            max(&small[i].init_ms),
            median(&small[i].peak_mib),
            max(&small[i].peak_mib),
        ));
    }

    // 2. The archive step: a quarter of the range, then all of it.
    report.push_str("\nThe archive step in the poller binary (`shipped_lineitems`, CSV, zip), parts read from and the archive written to S3 (moto):\n\n| export | parts | rows | parts size | archive size | packaging time | throughput | poller peak RSS |\n|---|---|---|---|---|---|---|---|\n");
    for (label, from, to) in [
        ("1992–1993", "1992-01-01", "1993-12-31"),
        ("1992–1998 (all)", "1992-01-01", "1998-12-31"),
    ] {
        let mut measures: [Measures; 4] = std::array::from_fn(|_| Measures {
            init_ms: Vec::new(),
            peak_mib: Vec::new(),
        });
        let body = json!({"dataset": "shipped_lineitems", "params": {"ship_from": from, "ship_to": to}, "format": "csv", "archive": "zip"});
        let (job, packaging) =
            one_export(&options, &emulator, &control, &body, &mut measures).await?;
        let manifest: Value = {
            let key = format!("exports/{}/manifest", job.request_id);
            let object = emulator
                .clients
                .s3
                .get_object()
                .bucket(&emulator.results_bucket)
                .key(key)
                .send()
                .await?;
            serde_json::from_slice(&object.body.collect().await?.into_bytes())?
        };
        let parts = manifest["entries"].as_array().map_or(0, Vec::len);
        let parts_bytes = manifest["meta"]["content_length"].as_u64().unwrap_or(0);
        let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
        report.push_str(&format!(
            "| {label} | {parts} | {} | {:.2} GiB | {:.2} GiB | {:.1} s | {:.0} MiB/s | {:.1} MiB |\n",
            job.rows.unwrap_or(0),
            gib(parts_bytes),
            gib(job.bytes.unwrap_or(0)),
            packaging.as_secs_f64(),
            parts_bytes as f64 / (1024.0 * 1024.0) / packaging.as_secs_f64(),
            measures[3].peak_mib[0],
        ));
    }
    // 3. Packaging of a multi-GiB export, every way, side by side.
    report.push('\n');
    report.push_str(&crate::bench_packaging::run(&options, &emulator, &control).await?);
    println!("{report}");
    if let Some(path) = &options.report {
        std::fs::write(path, &report)?;
    }
    Ok(())
}
