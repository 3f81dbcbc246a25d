//! `export-devtools bench`: the local stack's submit path under concurrent signed clients, and
//! the time from submit to email for a one-row export. Medians and percentiles from one run.

use anyhow::Context;
use export_client::{Client, Signer};
use export_local::{LocalConfig, LocalStack};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchOptions {
    /// Concurrent signed clients submitting.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Submissions in the throughput run, across all clients.
    #[arg(long, default_value_t = 20000)]
    pub submits: usize,
    /// One-row exports timed from submit to email, one after another.
    #[arg(long, default_value_t = 100)]
    pub exports: usize,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The `p`th percentile of sorted durations (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds to two places.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub async fn run(base: LocalConfig, options: BenchOptions) -> anyhow::Result<()> {
    let scratch = tempfile_dir(&base.data_dir)?;
    let request = json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}});

    // 1. The submit path alone: receiver work only, as on AWS where it is its own function.
    let mut config = base.clone();
    config.data_dir = scratch.join("submit");
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.processors = 0;
    config.pollers = 0;
    let stack = LocalStack::start(config).await?;
    let client = Client::new(&stack.base_url(), alice()?)?;
    for _ in 0..50 {
        client.submit(&request, None).await?; // warm-up: connections, statement caches
    }
    // The clients get a runtime of their own, as separate client processes would have, so
    // the server's scheduling is not interleaved with theirs.
    let (latencies, wall) = {
        let clients = options.clients;
        let per_client = options.submits.div_ceil(clients);
        let request = request.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let started = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..clients {
                    let client = client.clone();
                    let request = request.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut latencies = Vec::with_capacity(per_client);
                        for _ in 0..per_client {
                            let t = Instant::now();
                            client.submit(&request, None).await?;
                            latencies.push(t.elapsed());
                        }
                        anyhow::Ok(latencies)
                    }));
                }
                let mut latencies = Vec::new();
                for task in tasks {
                    latencies.extend(task.await??);
                }
                anyhow::Ok((latencies, started.elapsed()))
            })
        })
        .await??
    };
    let mut latencies = latencies;
    stack.stop().await;
    latencies.sort();
    let throughput = latencies.len() as f64 / wall.as_secs_f64();

    // 2. Submit to email, one job at a time, on the whole stack.
    let mut config = base;
    config.data_dir = scratch.join("e2e");
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let stack = LocalStack::start(config).await?;
    let client = Client::new(&stack.base_url(), alice()?)?;
    let mut to_email = Vec::with_capacity(options.exports);
    for i in 0..options.exports + 3 {
        let t = Instant::now();
        let accepted = client.submit(&request, None).await?;
        let id = accepted.request_id;
        wait_for_mail(&stack.outbox, &id, Duration::from_secs(60)).await?;
        if i >= 3 {
            to_email.push(t.elapsed()); // the first few warm the engine's caches
        }
    }
    stack.stop().await;
    to_email.sort();
    let _ = std::fs::remove_dir_all(&scratch);

    let report = format!(
        "| measure | value | target |\n|---|---|---|\n\
         | submit latency p50 ({} clients, {} submits) | {} ms | |\n\
         | submit latency p99 | {} ms | ≤ 10 ms |\n\
         | submit throughput | {:.0} submits/s | ≥ 1,000 /s |\n\
         | submit → email, 1-row export, p50 ({} runs) | {} ms | ≤ 300 ms |\n\
         | submit → email, 1-row export, p90 | {} ms | |\n",
        options.clients,
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        throughput,
        to_email.len(),
        ms(percentile(&to_email, 50.0)),
        ms(percentile(&to_email, 90.0)),
    );
    println!("{report}");
    if let Some(path) = options.report {
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn wait_for_mail(
    outbox: &std::path::Path,
    request_id: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(entries) = std::fs::read_dir(outbox) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(request_id) {
                    return Ok(());
                }
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no email for {request_id} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A scratch directory beside the data directory, so the benchmark never touches real state.
fn tempfile_dir(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.with_file_name(format!(".export-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The local stack's demo identity `alice`.
pub fn alice() -> anyhow::Result<Signer> {
    let identity = export_local::sigv4::LocalIdentity::demo_named("alice")
        .context("the local stack has an identity named alice")?;
    Ok(Signer::with_keys(
        &identity.access_key,
        &identity.secret_key,
        export_local::sigv4::REGION,
    ))
}
