//! `export-devtools fairness`: one caller floods the warehouse, nine others want a few exports
//! each. Three runs on the local stack, over a warehouse that runs a fixed number of
//! statements at once (its WLM queue) and queues the rest, first come first served:
//!
//! 1. **alone**: the nine callers only, with admission;
//! 2. **shared**: the flood first, then the nine, with admission;
//! 3. **no admission**: the same as 2 with admission off.
//!
//! Reported: the nine's completion times (submit to end) in 2 against 1 (target: within 2×),
//! the throughput of 2 against 3 (target: at least 0.9×), and the most statements the
//! warehouse's own log shows running at once (never more than the slots with admission).
//! Every request is signed before the clock starts (`--sign-as-sent` signs each as it goes).

use crate::bench::percentile;
use anyhow::{ensure, Context};
use export_client::{Client, SignedRequest, Signer};
use export_core::ports::ControlTable;
use export_local::sigv4::{LocalIdentity, REGION};
use export_local::warehouse::statements::StatementLog;
use export_local::warehouse::{ClientTokens, CLIENT_TOKEN_LIFETIME};
use export_local::{LocalConfig, LocalStack};
use futures::stream::{self, StreamExt};
use http::Method;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct FairnessOptions {
    /// Exports the one heavy caller submits, all at once.
    #[arg(long, default_value_t = 1000)]
    pub heavy: usize,
    /// Callers with a few exports each…
    #[arg(long, default_value_t = 9)]
    pub light_callers: usize,
    /// …and how many each.
    #[arg(long, default_value_t = 5)]
    pub light_exports: usize,
    /// Warehouse slots the product may use at once (admission).
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Statements the warehouse itself runs at once, the rest queued (its WLM queue)…
    #[arg(long, default_value_t = 8)]
    pub warehouse_concurrency: usize,
    /// …and the least time each takes.
    #[arg(long, default_value = "100ms", value_parser = export_local::parse_duration)]
    pub statement_time: Duration,
    /// Sign each request as it is sent, as a naive load generator would, instead of all of
    /// them before the clock starts.
    #[arg(long)]
    pub sign_as_sent: bool,
    /// How long a run may take before it fails.
    #[arg(long, default_value_t = 1200)]
    pub timeout_secs: u64,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// One caller of a run: its identity and its client.
struct Caller {
    arn: String,
    client: Client,
}

/// What one run measured.
struct Outcome {
    /// Submit to end of each light caller's job.
    light: Vec<Duration>,
    /// From the first submit to the last job's end.
    makespan: Duration,
    jobs: usize,
    /// The most UNLOADs the warehouse's log shows at once.
    peak: usize,
}

impl Outcome {
    fn throughput(&self) -> f64 {
        self.jobs as f64 / self.makespan.as_secs_f64()
    }
}

fn callers(count: usize) -> Vec<LocalIdentity> {
    (0..count)
        .map(|i| {
            let name = if i == 0 {
                "heavy".to_owned()
            } else {
                format!("light-{i}")
            };
            LocalIdentity::new(
                &format!("LOCALFAIR{i:02}"),
                &format!("fair-{name}-secret"),
                &format!("arn:aws:iam::000000000000:user/{name}"),
            )
        })
        .collect()
}

async fn run_once(
    base: &LocalConfig,
    options: &FairnessOptions,
    name: &str,
    slots: Option<u32>,
    heavy: usize,
) -> anyhow::Result<Outcome> {
    let mut config = base.clone();
    config.data_dir = base
        .data_dir
        .with_file_name(format!(".export-fairness-{}-{name}", std::process::id()));
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admission.slots = slots;
    config.warehouse_concurrency = Some(options.warehouse_concurrency);
    config.statement_delay = options.statement_time;
    let identities = callers(options.light_callers + 1);
    config.identities.extend(identities.iter().cloned());
    let stack = LocalStack::start(config.clone()).await?;
    let callers: Vec<Caller> = identities
        .iter()
        .map(|id| {
            Ok(Caller {
                arn: id.arn.clone(),
                client: Client::new(
                    &stack.base_url(),
                    Signer::with_keys(&id.access_key, &id.secret_key, REGION),
                )?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let body = serde_json::to_vec(&serde_json::json!({
        "dataset": "product_detail", "params": {"sku": "FLOWER12"}
    }))?;
    let request = |caller: &Caller| {
        caller.client.signed_request(
            Method::POST,
            "/exports",
            body.clone(),
            &[("content-type", "application/json")],
        )
    };
    // The flood, then the nine's few, in that order; signed now unless told otherwise.
    let mut plan: Vec<(&Caller, Option<SignedRequest>)> = Vec::new();
    for _ in 0..heavy {
        plan.push((&callers[0], None));
    }
    for caller in &callers[1..] {
        for _ in 0..options.light_exports {
            plan.push((caller, None));
        }
    }
    if !options.sign_as_sent {
        for (caller, signed) in &mut plan {
            *signed = Some(request(caller)?);
        }
    }
    let expected = plan.len();

    let started = Instant::now();
    let started_at = chrono::Utc::now().timestamp_millis();
    let (heavy_plan, light_plan) = plan.split_at(heavy);
    for part in [heavy_plan, light_plan] {
        let sent: Vec<anyhow::Result<()>> = stream::iter(part)
            .map(|(caller, signed)| async {
                let signed = match signed {
                    Some(signed) => signed.clone(),
                    None => request(caller)?,
                };
                let reply = caller.client.send_signed(&signed).await?;
                ensure!(reply.status == 202, "submit answered {}", reply.status);
                Ok(())
            })
            .buffer_unordered(32)
            .collect()
            .await;
        sent.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    }

    // Every job ended: read from the control table, as the sweep reads it.
    let deadline = started + Duration::from_secs(options.timeout_secs);
    loop {
        let open = stack
            .store
            .unsettled_jobs(i64::MAX, expected + 1)
            .await?
            .into_iter()
            .filter(|j| !j.status.is_terminal())
            .count();
        if open == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{name}: {open} jobs not ended after {}s",
            options.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut light = Vec::new();
    let mut last_end = started_at;
    let mut jobs = 0;
    for caller in &callers {
        let owner = export_core::domain::Owner(caller.arn.clone());
        let mut after = None;
        loop {
            let page = stack.store.list_jobs(&owner, 100, after.as_ref()).await?;
            for job in &page.jobs {
                ensure!(
                    job.status == export_core::domain::JobStatus::Succeeded,
                    "{name}: job {} {}",
                    job.request_id,
                    job.status
                );
                jobs += 1;
                last_end = last_end.max(job.updated_at);
                if caller.arn != callers[0].arn {
                    light.push(Duration::from_millis(
                        (job.updated_at - job.created_at).max(0) as u64,
                    ));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    ensure!(jobs == expected, "{name}: {jobs} jobs of {expected}");
    light.sort();
    let log = StatementLog::open(
        &config.data_dir.join("warehouse").join("statements.sqlite"),
        ClientTokens {
            clock: Arc::new(export_core::clock::SystemClock),
            lifetime: CLIENT_TOKEN_LIFETIME,
        },
    )?;
    let peak = log.peak_unloads().await?;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&config.data_dir);
    Ok(Outcome {
        light,
        makespan: Duration::from_millis((last_end - started_at).max(1) as u64),
        jobs,
        peak,
    })
}

pub async fn run(base: LocalConfig, options: FairnessOptions) -> anyhow::Result<()> {
    let slots = Some(options.slots);
    let alone = run_once(&base, &options, "alone", slots, 0).await?;
    let shared = run_once(&base, &options, "shared", slots, options.heavy).await?;
    let open = run_once(&base, &options, "open", None, options.heavy).await?;

    let median = |d: &[Duration]| percentile(d, 50.0);
    let max = |d: &[Duration]| d.last().copied().unwrap_or_default();
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    let mut report = String::new();
    writeln!(
        report,
        "One caller submits {} exports, then {} callers {} each; the warehouse runs {} statements at once, each at least {:?}; admission at {} slots. Requests {}.\n",
        options.heavy,
        options.light_callers,
        options.light_exports,
        options.warehouse_concurrency,
        options.statement_time,
        options.slots,
        if options.sign_as_sent { "signed as sent" } else { "signed before the clock started" },
    )?;
    writeln!(
        report,
        "| run | jobs | makespan (s) | jobs/s | the nine's median (s) | the nine's slowest (s) | most statements at once |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|")?;
    for (label, outcome) in [
        ("the nine alone, admission on", &alone),
        ("with the flood, admission on", &shared),
        ("with the flood, admission off", &open),
    ] {
        writeln!(
            report,
            "| {label} | {} | {} | {:.1} | {} | {} | {} |",
            outcome.jobs,
            secs(outcome.makespan),
            outcome.throughput(),
            secs(median(&outcome.light)),
            secs(max(&outcome.light)),
            outcome.peak
        )?;
    }
    let slowdown = median(&shared.light).as_secs_f64() / median(&alone.light).as_secs_f64();
    let slowest = max(&shared.light).as_secs_f64() / max(&alone.light).as_secs_f64();
    let throughput = shared.throughput() / open.throughput();
    let without = median(&open.light).as_secs_f64() / median(&alone.light).as_secs_f64();
    writeln!(
        report,
        "\nThe nine's completion with the flood against alone: median {slowdown:.2}×, slowest {slowest:.2}× (target: within 2×; without admission, median {without:.1}×). Throughput with admission against without: {throughput:.2}× (target: at least 0.9×). Slots never exceeded: {} (the warehouse's log shows at most {} statements at once, with {} slots).",
        shared.peak <= options.slots as usize && alone.peak <= options.slots as usize,
        shared.peak.max(alone.peak),
        options.slots,
    )?;
    print!("{report}");
    if let Some(path) = &options.report {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(
        shared.peak <= options.slots as usize,
        "the warehouse ran {} statements at once with {} slots",
        shared.peak,
        options.slots
    );
    Ok(())
}
