//! `export-devtools load`: many exports submitted at once by concurrent signed clients, with
//! lookups from other clients meanwhile, on the whole local stack. Reports the submit and
//! lookup latencies, how fast the exports finished and how long until every one was settled,
//! and fails unless every job succeeded once with exactly one email.

use crate::bench::{alice, ms, percentile};
use anyhow::{ensure, Context};
use export_client::Client;
use export_core::ports::ControlTable;
use export_local::{LocalConfig, LocalStack};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct LoadOptions {
    /// Exports submitted, all at once.
    #[arg(long, default_value_t = 1000)]
    pub exports: usize,
    /// Concurrent signed clients submitting them.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Concurrent clients looking customers up until every export is settled.
    #[arg(long, default_value_t = 4)]
    pub lookup_clients: usize,
    /// How long every export has to be settled before the run fails.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub async fn run(base: LocalConfig, options: LoadOptions) -> anyhow::Result<()> {
    let scratch = base
        .data_dir
        .with_file_name(format!(".export-load-{}", std::process::id()));
    let mut config = base;
    config.data_dir = scratch.clone();
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let stack = LocalStack::start(config.clone()).await?;
    let client = Client::new(&stack.base_url(), alice()?)?;

    // The clients get a runtime of their own, as separate client processes would have.
    let exports = options.exports;
    let (clients, lookup_clients) = (options.clients, options.lookup_clients);
    let settled = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, settled) = (client.clone(), settled.clone());
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(clients_run(
                client,
                exports,
                clients,
                lookup_clients,
                settled,
            ))
        })
    };

    // Settled: every job ended and its notice sent, as the sweep reads the control table.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.timeout_secs);
    let mut all_ended = None;
    loop {
        let unsettled = stack.store.unsettled_jobs(i64::MAX, exports + 1).await?;
        let submitted = submitted_count(&stack, exports).await?;
        if all_ended.is_none() && submitted == exports {
            let open = unsettled.iter().filter(|j| !j.status.is_terminal()).count();
            if open == 0 {
                all_ended = Some(started.elapsed());
            }
        }
        if submitted == exports && unsettled.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{} of {submitted} jobs not settled after {:?}",
            unsettled.len(),
            options.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_settled = started.elapsed();
    settled.store(true, Ordering::SeqCst);
    let run = load.await??;

    // Every job succeeded, once, with one email.
    let mails = export_local::outbox::mails_per_job(&stack.outbox);
    let mut statuses = BTreeMap::<String, usize>::new();
    for id in &run.ids {
        let job = stack
            .store
            .get_job(id)
            .await?
            .with_context(|| format!("job {id} is not in the control table"))?;
        *statuses.entry(job.status.to_string()).or_default() += 1;
        ensure!(
            mails.get(id) == Some(&1),
            "job {id} got {:?} emails",
            mails.get(id)
        );
    }
    ensure!(
        statuses.get("SUCCEEDED") == Some(&exports),
        "not every job succeeded: {statuses:?}"
    );
    ensure!(
        mails.len() == exports,
        "{} mails for {exports} jobs",
        mails.len()
    );
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let (mut submits, mut lookups) = (run.submit_latencies, run.lookup_latencies);
    submits.sort();
    lookups.sort();
    let ended = all_ended.unwrap_or(all_settled);
    let report = format!(
        "| measure | value |\n|---|---|\n\
         | exports submitted at once | {exports} by {clients} clients |\n\
         | submit latency p50 / p90 / p99 | {} / {} / {} ms |\n\
         | all submitted after | {:.2} s |\n\
         | all ended after | {:.2} s ({:.0} exports finished a second) |\n\
         | all settled (mailed) after | {:.2} s |\n\
         | lookups meanwhile ({lookup_clients} clients) | {} answered, {} refused |\n\
         | lookup latency p50 / p90 / p99 | {} / {} / {} ms |\n\
         | outcome | {exports} SUCCEEDED, one email each |\n",
        ms(percentile(&submits, 50.0)),
        ms(percentile(&submits, 90.0)),
        ms(percentile(&submits, 99.0)),
        run.submitted_after.as_secs_f64(),
        ended.as_secs_f64(),
        exports as f64 / ended.as_secs_f64(),
        all_settled.as_secs_f64(),
        lookups.len(),
        run.lookups_refused,
        ms(percentile(&lookups, 50.0)),
        ms(percentile(&lookups, 90.0)),
        ms(percentile(&lookups, 99.0)),
    );
    println!("{report}");
    if let Some(path) = options.report {
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

struct ClientsRun {
    ids: Vec<String>,
    submit_latencies: Vec<Duration>,
    submitted_after: Duration,
    lookup_latencies: Vec<Duration>,
    lookups_refused: usize,
}

async fn clients_run(
    client: Client,
    exports: usize,
    clients: usize,
    lookup_clients: usize,
    settled: Arc<AtomicBool>,
) -> anyhow::Result<ClientsRun> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for _ in 0..clients {
        let (client, next) = (client.clone(), next.clone());
        submitters.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= exports {
                    return anyhow::Ok(done);
                }
                // A different set of customers each, so no two exports are alike.
                let ids: Vec<usize> = (0..5).map(|i| 1 + (n * 7 + i * 131) % 1500).collect();
                let archive = ["zip", "tar.gz", "none"][n % 3];
                let request = json!({
                    "dataset": "customers",
                    "params": {"ids": ids},
                    "archive": archive,
                });
                let t = Instant::now();
                let accepted = client.submit(&request, None).await?;
                let id = accepted.request_id;
                done.push((id, t.elapsed()));
            }
        }));
    }
    let mut lookers = Vec::new();
    for l in 0..lookup_clients {
        let (client, settled) = (client.clone(), settled.clone());
        lookers.push(tokio::spawn(async move {
            let (mut latencies, mut refused, mut n) = (Vec::new(), 0, l);
            while !settled.load(Ordering::SeqCst) {
                n += lookup_clients;
                let t = Instant::now();
                let path = format!("/lookups/customers?ids={}", 1 + n % 1500);
                match client.send(http::Method::GET, &path, None, &[]).await {
                    Ok(reply) if reply.status == 200 => latencies.push(t.elapsed()),
                    _ => refused += 1,
                }
            }
            (latencies, refused)
        }));
    }
    let mut ids = Vec::with_capacity(exports);
    let mut submit_latencies = Vec::with_capacity(exports);
    for submitter in submitters {
        for (id, latency) in submitter.await?? {
            ids.push(id);
            submit_latencies.push(latency);
        }
    }
    let submitted_after = started.elapsed();
    let (mut lookup_latencies, mut lookups_refused) = (Vec::new(), 0);
    for looker in lookers {
        let (latencies, refused) = looker.await?;
        lookup_latencies.extend(latencies);
        lookups_refused += refused;
    }
    Ok(ClientsRun {
        ids,
        submit_latencies,
        submitted_after,
        lookup_latencies,
        lookups_refused,
    })
}

/// Jobs in the control table: alice's, the only caller here, read in at most as many pages
/// as `expected` jobs and one more need.
async fn submitted_count(stack: &LocalStack, expected: usize) -> anyhow::Result<usize> {
    let owner = export_core::domain::Owner(
        export_local::sigv4::LocalIdentity::demo_named("alice")
            .context("alice")?
            .arn,
    );
    let mut count = 0;
    let mut after = None;
    for _ in 0..=expected / 1000 + 1 {
        let page = stack.store.list_jobs(&owner, 1000, after.as_ref()).await?;
        count += page.jobs.len();
        match page.next {
            Some(token) => after = Some(token),
            None => return Ok(count),
        }
    }
    anyhow::bail!("more pages of jobs than {expected} jobs need")
}
