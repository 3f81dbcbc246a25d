//! `redshift-export`: the local stack, the demo, the console, and a SigV4 client for any
//! endpoint. Each command's body is in `commands`; this is the command line and the dispatch.

mod commands;

use anyhow::Context;
use clap::{Parser, Subcommand};
use commands::catalogue::{self, LookupArgs};
use commands::jobs::{self, DownloadArgs, JobArgs, ListArgs, StatusArgs, SubmitArgs, WaitArgs};
use commands::stack::{self, ConsoleArgs, ServeArgs};
use commands::ClientArgs;
use commands::{audit, subscriptions, webhook};
use export_local::StackOptions;

/// mimalloc rather than the system's: a lookup allocates many small values, and with it the
/// local stack answered 1.21-1.26x the uncached lookups a second (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Asynchronous export jobs for Amazon Redshift: run the local stack, or call any endpoint.
#[derive(Parser)]
#[command(name = "redshift-export", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack: gateway and workers, until Ctrl-C.
    Serve(ServeArgs),
    /// Start the local stack, run two exports end to end, print what came out, stop. The
    /// stack's own log lines go to `<data-dir>/demo.log`.
    Demo {
        #[command(flatten)]
        stack: StackOptions,
    },
    /// Submit an export: `submit product_detail -p sku=FLOWER12`.
    Submit(SubmitArgs),
    /// A job's latest state, or with --all its whole history.
    Status(StatusArgs),
    /// Wait for a job to finish, showing its progress.
    Wait(WaitArgs),
    /// Download a finished job's archive (a fresh link each time); for `archive: none`, every
    /// part into a directory (the request id, unless --output names one).
    Download(DownloadArgs),
    /// Cancel a job that has not finished.
    Cancel(JobArgs),
    /// Your jobs, newest first (with --owner, another caller's, for an admin).
    List(ListArgs),
    /// Look a dataset up at once (for those that offer it): `lookup customers -p ids=1,2,3`.
    Lookup(LookupArgs),
    /// The web console for a deployed API, on loopback: it signs the page's calls with the
    /// AWS credential chain, so no secret reaches the browser (`serve` has it at /console).
    Console(ConsoleArgs),
    /// The export catalogue.
    Datasets {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your quotas and today's use of each.
    Quota {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The local stack's audit record (every export, lookup and link), filtered.
    Audit(audit::AuditArgs),
    /// Check a catalogue before it runs: every entry planned on the local warehouse with
    /// sample values, its UNLOAD held to Redshift's rules; non-zero exit on any problem.
    Check(catalogue::CheckArgs),
    /// Check a webhook notice's `Export-Signature` against its body and the webhook's
    /// secret, as a partner's receiver should.
    VerifyWebhook(webhook::VerifyWebhookArgs),
    /// Subscribe to an export on a schedule: `subscribe supplier_shipments -p ship_from=yesterday
    /// -p ship_to=yesterday --schedule "cron(0 6 * * ? *)" --webhook https://… --s3 s3://…/`.
    Subscribe(subscriptions::SubscribeArgs),
    /// Your subscriptions.
    Subscriptions {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One subscription: show, pause, resume, runs, delete.
    Subscription(subscriptions::SubscriptionArgs),
    /// Your webhook secret, to check the `Export-Signature` of the notices you receive.
    WebhookSecret {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// POST a test notice, signed with your webhook secret, to a receiver.
    TestWebhook(subscriptions::TestWebhookArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Demo { stack } => init_logging(Some(&stack.data_dir.join("demo.log")))?,
        _ => init_logging(None)?,
    }
    match cli.command {
        Command::Serve(args) => stack::serve(args).await,
        Command::Demo { stack } => stack::demo(stack).await,
        Command::Console(args) => stack::console(args).await,
        Command::Submit(args) => jobs::submit(args).await,
        Command::Status(args) => jobs::status(args).await,
        Command::Wait(args) => jobs::wait(args).await,
        Command::Download(args) => jobs::download(args).await,
        Command::Cancel(args) => jobs::cancel(args).await,
        Command::List(args) => jobs::list(args).await,
        Command::Lookup(args) => catalogue::lookup(args).await,
        Command::Datasets { client } => catalogue::datasets(client).await,
        Command::Quota { client } => catalogue::quota(client).await,
        Command::Audit(args) => audit::audit(args),
        Command::Check(args) => catalogue::check(args).await,
        Command::VerifyWebhook(args) => webhook::verify_webhook(args),
        Command::Subscribe(args) => subscriptions::subscribe(args).await,
        Command::Subscriptions { client } => subscriptions::list(client).await,
        Command::Subscription(args) => subscriptions::subscription(args).await,
        Command::WebhookSecret { client } => subscriptions::webhook_secret(client).await,
        Command::TestWebhook(args) => subscriptions::test_webhook(args).await,
    }
}

/// Log lines go to standard error, or for the demo to a file in its data directory, so they
/// never mix with what the command prints.
fn init_logging(to_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,datafusion=warn,sqlparser=warn".into()),
    );
    match to_file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            logs.with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => logs.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
