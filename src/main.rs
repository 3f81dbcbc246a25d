use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use export_local::sigv4::LocalIdentity;
use export_local::{LocalConfig, LocalStack};
use redshift_export::client::{Client, Signer};
use redshift_export::{bench, bench_lambda, demo};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Asynchronous export jobs for Amazon Redshift: run the local stack, or call any endpoint.
#[derive(Parser)]
#[command(name = "redshift-export", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct StackArgs {
    /// Where all local state lives; delete it for a full reset.
    #[arg(long, default_value = ".export-local", env = "EXPORT_DATA_DIR")]
    data_dir: PathBuf,
    /// The demo schema and the export catalogue.
    #[arg(long, default_value = "sql")]
    sql_dir: PathBuf,
    /// TPC-H scale factor for orders and lineitem (customer is at least 0.1).
    #[arg(long, default_value_t = 0.01)]
    scale: f64,
    /// Extra identities, ACCESS_KEY:SECRET:ARN (alice and bob are always there).
    #[arg(long = "identity")]
    identities: Vec<String>,
    /// Concurrent processor and poller workers, each.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

impl StackArgs {
    fn config(&self) -> anyhow::Result<LocalConfig> {
        let mut config = LocalConfig::new(self.data_dir.clone(), self.sql_dir.clone());
        config.scale = self.scale;
        config.processors = self.workers;
        config.pollers = self.workers;
        for spec in &self.identities {
            config
                .identities
                .push(LocalIdentity::parse(spec).map_err(anyhow::Error::msg)?);
        }
        Ok(config)
    }
}

#[derive(Args)]
struct ClientArgs {
    /// The API's base URL (with its stage on API Gateway).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "EXPORT_ENDPOINT",
        global = true
    )]
    endpoint: String,
    /// Sign as a local demo identity (alice, bob) instead of the AWS credential chain.
    #[arg(long = "as", global = true)]
    identity: Option<String>,
    /// Region to sign for with AWS credentials (default: the chain's, else us-east-1).
    #[arg(long, global = true)]
    region: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack: gateway and workers, until Ctrl-C.
    Serve {
        #[command(flatten)]
        stack: StackArgs,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// Start the local stack, run two exports end to end, print what came out, stop.
    Demo {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Measure submit latency and throughput, and submit-to-email time, on the local stack.
    Bench {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        options: bench::BenchOptions,
    },
    /// Measure the Lambda binaries (size, cold init, peak memory) and the archive step on a
    /// >1 GiB export, against moto and the project's Data API endpoint.
    BenchLambda {
        #[command(flatten)]
        options: bench_lambda::LambdaBenchOptions,
    },
    /// Submit an export: `submit product_detail -p sku=FLOWER12`.
    Submit {
        dataset: String,
        /// A parameter, name=value (lists comma-separated); typed from the catalogue.
        #[arg(short = 'p', long = "param")]
        params: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        compression: Option<String>,
        #[arg(long)]
        archive: Option<String>,
        #[arg(long)]
        notify: Vec<String>,
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A job's latest state, or with --all its whole history.
    Status {
        request_id: String,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait for a job to finish, showing its progress.
    Wait {
        request_id: String,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a finished job's archive (a fresh link each time).
    Download {
        request_id: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job that has not finished.
    Cancel {
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your jobs, newest first.
    List {
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The export catalogue.
    Datasets {
        #[command(flatten)]
        client: ClientArgs,
    },
}

async fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let signer = match &args.identity {
        Some(name) => Signer::local(name)?,
        None => Signer::from_environment(args.region.clone()).await?,
    };
    Client::new(&args.endpoint, signer)
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON prints")
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,datafusion=warn,sqlparser=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { stack, addr } => {
            let mut config = stack.config()?;
            config.addr = addr;
            let stack = LocalStack::start(config).await?;
            println!("Local stack on {} — sign as alice (LOCALALICE / local-alice-secret) or bob; Ctrl-C stops.", stack.base_url());
            tokio::signal::ctrl_c().await?;
            println!("Stopping: finishing the messages in hand …");
            stack.stop().await;
        }
        Command::Demo { stack } => demo::run(stack.config()?).await?,
        Command::Bench { stack, options } => bench::run(stack.config()?, options).await?,
        Command::BenchLambda { options } => bench_lambda::run(options).await?,
        Command::Submit {
            dataset,
            params,
            format,
            compression,
            archive,
            notify,
            idempotency_key,
            client: args,
        } => {
            let client = client(&args).await?;
            let catalogue = client.get("/datasets").await.ok();
            let declared = catalogue.as_ref().and_then(|c| {
                c["datasets"]
                    .as_array()?
                    .iter()
                    .find(|d| d["name"] == dataset.as_str())
            });
            let mut request =
                json!({ "dataset": dataset, "params": demo::typed_params(&params, declared)? });
            for (key, value) in [
                ("format", format),
                ("compression", compression),
                ("archive", archive),
            ] {
                if let Some(value) = value {
                    request[key] = json!(value);
                }
            }
            if !notify.is_empty() {
                request["notify"] = json!(notify);
            }
            print(&client.submit(&request, idempotency_key.as_deref()).await?);
        }
        Command::Status {
            request_id,
            all,
            client: args,
        } => {
            let client = client(&args).await?;
            print(&if all {
                client.events(&request_id).await?
            } else {
                client.status(&request_id).await?
            });
        }
        Command::Wait {
            request_id,
            timeout_secs,
            client: args,
        } => {
            let client = client(&args).await?;
            let started = std::time::Instant::now();
            let status = client
                .wait(&request_id, Duration::from_secs(timeout_secs), |s| {
                    eprint!(
                        "\r{:>6.1}s  {:<10}",
                        started.elapsed().as_secs_f64(),
                        s["status"].as_str().unwrap_or("?")
                    );
                })
                .await?;
            eprintln!();
            print(&status);
            anyhow::ensure!(
                status["status"] == "SUCCEEDED",
                "the export ended {}",
                status["status"]
            );
        }
        Command::Download {
            request_id,
            output,
            client: args,
        } => {
            let client = client(&args).await?;
            let link = client.download_link(&request_id).await?;
            let name = link
                .split('?')
                .next()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("export.zip")
                .to_owned();
            let path = output.unwrap_or_else(|| PathBuf::from(&name));
            let bytes = client.fetch(&link).await?;
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("{} ({} bytes)", path.display(), bytes.len());
        }
        Command::Cancel {
            request_id,
            client: args,
        } => print(&client(&args).await?.cancel(&request_id).await?),
        Command::List {
            limit,
            cursor,
            client: args,
        } => {
            let mut query = vec![];
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if let Some(cursor) = cursor {
                query.push(format!("cursor={cursor}"));
            }
            let path = if query.is_empty() {
                "/exports".to_owned()
            } else {
                format!("/exports?{}", query.join("&"))
            };
            print(&client(&args).await?.get(&path).await?);
        }
        Command::Datasets { client: args } => print(&client(&args).await?.get("/datasets").await?),
    }
    Ok(())
}
