//! `export-devtools`: the benchmarks. `cargo run --release -p export-devtools -- bench` (the
//! local stack's submit path), `-- bench-lambda` (the function binaries against the emulated
//! AWS), `-- bench-lookups` (lookups, cached and not, on any endpoint) and `-- fairness`
//! (one caller's flood against others' few exports, with admission and without); results and
//! the commands that made them are in docs/BENCHMARKS.md. `-- load` (many exports at once, with
//! lookups, each checked to end once with one email) reports in docs/RELIABILITY.md.

mod bench;
mod bench_lambda;
mod bench_lookups;
mod bench_packaging;
mod fairness;
mod load;

/// As the CLI's: the local stack measured here runs on the allocator it runs on there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use export_local::StackOptions;

#[derive(Parser)]
#[command(name = "export-devtools", about = "Benchmarks of the export API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure submit latency and throughput, and submit-to-email time, on the local stack.
    Bench {
        #[command(flatten)]
        stack: StackOptions,
        #[command(flatten)]
        options: bench::BenchOptions,
    },
    /// Measure the Lambda binaries (size, cold init, peak memory) and the archive step on a
    /// >1 GiB export, against moto and the project's Data API endpoint.
    BenchLambda {
        #[command(flatten)]
        options: bench_lambda::LambdaBenchOptions,
    },
    /// Measure lookups under concurrent signed clients, cache defeated and cache hit; writes
    /// a table and an SVG chart of the latencies.
    BenchLookups {
        #[command(flatten)]
        options: bench_lookups::LookupBenchOptions,
    },
    /// One caller's flood of exports against nine callers' few, with admission and without:
    /// the nine's completion times, the throughput, and the slots never exceeded.
    Fairness {
        #[command(flatten)]
        stack: StackOptions,
        #[command(flatten)]
        options: fairness::FairnessOptions,
    },
    /// Submit many exports at once from concurrent clients, with lookups meanwhile, on the
    /// local stack; report the latencies and how long until all were settled, and fail unless
    /// every one succeeded with one email.
    Load {
        #[command(flatten)]
        stack: StackOptions,
        #[command(flatten)]
        options: load::LoadOptions,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Bench { stack, options } => {
            bench::run(stack.config().map_err(anyhow::Error::msg)?, options).await
        }
        Command::BenchLambda { options } => bench_lambda::run(options).await,
        Command::BenchLookups { options } => bench_lookups::run(options).await,
        Command::Fairness { stack, options } => {
            fairness::run(stack.config().map_err(anyhow::Error::msg)?, options).await
        }
        Command::Load { stack, options } => {
            load::run(stack.config().map_err(anyhow::Error::msg)?, options).await
        }
    }
}
