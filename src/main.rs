use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use export_client::{Client, CredentialChain, Signer};
use export_console::{Console, Credentials, Identity};
use export_local::faults::{FaultPlan, Faults};
use export_local::sigv4::LocalIdentity;
use export_local::{LocalConfig, LocalStack};
use redshift_export::{demo, local_signer, show};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// How long a received message stays hidden before it is delivered again (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = export_local::parse_duration)]
    visibility_timeout: Duration,
    /// How often the sweep looks for jobs that stopped moving, and how long a job must sit
    /// still before it does.
    #[arg(long, default_value = "60s", value_parser = export_local::parse_duration)]
    sweep_every: Duration,
    #[arg(long, default_value = "300s", value_parser = export_local::parse_duration)]
    sweep_after: Duration,
    /// Faults to inject into the services' calls of the ports, to try how failures are
    /// handled: `port.operation:transient=P,lost=P,permanent=P,latency=D;…`, `*` for any
    /// (see docs/RELIABILITY.md).
    #[arg(long, env = "EXPORT_FAULTS")]
    faults: Option<String>,
    /// The seed of the injected faults' random choices.
    #[arg(long, default_value_t = 1, env = "EXPORT_FAULT_SEED")]
    fault_seed: u64,
}

impl StackArgs {
    fn config(&self) -> anyhow::Result<LocalConfig> {
        let mut config = LocalConfig::new(self.data_dir.clone(), self.sql_dir.clone());
        config.scale = self.scale;
        config.processors = self.workers;
        config.pollers = self.workers;
        config.visibility_timeout = self.visibility_timeout;
        config.sweep_every = self.sweep_every;
        config.sweep_after = self.sweep_after;
        if let Some(plan) = &self.faults {
            let plan: FaultPlan = plan.parse().map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
            config.faults = Some(Faults::new(plan, self.fault_seed));
        }
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
    /// Print the API's answers as JSON, unchanged, instead of for reading.
    #[arg(long, global = true)]
    json: bool,
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
    /// Start the local stack, run two exports end to end, print what came out, stop. The
    /// stack's own log lines go to `<data-dir>/demo.log`.
    Demo {
        #[command(flatten)]
        stack: StackArgs,
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
    /// Download a finished job's archive (a fresh link each time); for `archive: none`, every
    /// part into a directory (the request id, unless --output names one).
    Download {
        request_id: String,
        /// The archive's file, or the parts' directory.
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
    /// Look a dataset up at once (for those that offer it): `lookup customers -p ids=1,2,3`.
    Lookup {
        dataset: String,
        /// A parameter, name=value (lists comma-separated).
        #[arg(short = 'p', long = "param")]
        params: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The web console for a deployed API, on loopback: it signs the page's calls with the
    /// AWS credential chain, so no secret reaches the browser (`serve` has it at /console).
    Console {
        /// The API's base URL, with its stage.
        #[arg(long, env = "EXPORT_ENDPOINT")]
        endpoint: String,
        /// Where the console listens: a loopback address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Region to sign for (default: the chain's, else us-east-1).
        #[arg(long)]
        region: Option<String>,
    },
    /// The export catalogue.
    Datasets {
        #[command(flatten)]
        client: ClientArgs,
    },
}

async fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let signer = match &args.identity {
        Some(name) => local_signer(name)?,
        None => Signer::from_environment(args.region.clone()).await?,
    };
    Client::new(&args.endpoint, signer)
}

/// Prints an answer: as JSON with `--json`, else as `readable` renders it.
fn print(args: &ClientArgs, value: &Value, readable: fn(&Value) -> String) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON prints")
        );
    } else {
        print!("{}", readable(value));
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Demo { stack } => init_logging(Some(&stack.data_dir.join("demo.log")))?,
        _ => init_logging(None)?,
    }
    match cli.command {
        Command::Serve { stack, addr } => {
            let mut config = stack.config()?;
            config.addr = addr;
            if let Some(faults) = &config.faults {
                let report = config
                    .data_dir
                    .join(format!("faults-{}.json", std::process::id()));
                println!(
                    "Injecting faults: {}; counted in {}",
                    faults.plan_text(),
                    report.display()
                );
                faults.report_to(report);
            }
            let stack = LocalStack::start(config).await?;
            println!("Local stack on {} — sign as alice (LOCALALICE / local-alice-secret) or bob; Ctrl-C stops.", stack.base_url());
            println!("Console: {}", stack.console_url());
            tokio::signal::ctrl_c().await?;
            println!("Stopping: finishing the messages in hand …");
            stack.stop().await;
        }
        Command::Demo { stack } => demo::run(stack.config()?).await?,
        Command::Console {
            endpoint,
            addr,
            region,
        } => {
            export_console::check_listen_address(addr)?;
            let chain = CredentialChain::load(region).await?;
            // No credentials is said now, not at the page's first call.
            chain.signer().await?;
            let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "aws".into());
            let console = Console::new(
                &endpoint,
                vec![Identity {
                    name,
                    credentials: Credentials::Chain(chain),
                }],
            )?
            .with_token();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            println!(
                "Console for {endpoint}, signed with your AWS credentials; Ctrl-C stops. Open:\n{}",
                console.address(listener.local_addr()?)
            );
            export_console::serve(listener, Arc::new(console), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
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
            let accepted = client.submit(&request, idempotency_key.as_deref()).await?;
            print(&args, &accepted, |accepted| {
                format!(
                    "accepted: {} ({})\nfollow it with: redshift-export wait {}\n",
                    accepted["request_id"].as_str().unwrap_or("?"),
                    accepted["status"].as_str().unwrap_or("?"),
                    accepted["request_id"].as_str().unwrap_or("?"),
                )
            });
        }
        Command::Status {
            request_id,
            all,
            client: args,
        } => {
            let client = client(&args).await?;
            if all {
                print(&args, &client.events(&request_id).await?, show::history);
            } else {
                print(&args, &client.status(&request_id).await?, show::job);
            }
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
            print(&args, &status, show::job);
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
            let status = client.status(&request_id).await?;
            if status["archive"] == "none" && status["status"] == "SUCCEEDED" {
                let dir = output.unwrap_or_else(|| PathBuf::from(&request_id));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let parts = client.all_parts(&request_id).await?;
                for part in &parts {
                    let name = part["name"].as_str().context("a part without a name")?;
                    let url = part["url"].as_str().context("a part without a link")?;
                    // Names are the service's own (`<dataset>-NNNN.<ext>`); keep only the last
                    // component all the same.
                    let file = dir.join(
                        std::path::Path::new(name)
                            .file_name()
                            .context("a part's name names no file")?,
                    );
                    let written = client.fetch_to(url, &file).await?;
                    println!("{} ({written} bytes)", file.display());
                }
                println!("{} parts in {}", parts.len(), dir.display());
                return Ok(());
            }
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
        } => {
            let cancelled = client(&args).await?.cancel(&request_id).await?;
            print(&args, &cancelled, |c| {
                format!(
                    "{} {}\n",
                    c["request_id"].as_str().unwrap_or("?"),
                    text_of(&c["status"])
                )
            });
        }
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
                // Page tokens are base64url: nothing in them needs escaping in a query.
                query.push(format!("cursor={cursor}"));
            }
            let path = if query.is_empty() {
                "/exports".to_owned()
            } else {
                format!("/exports?{}", query.join("&"))
            };
            let page = client(&args).await?.get(&path).await?;
            print(&args, &page, show::jobs);
        }
        Command::Lookup {
            dataset,
            params,
            client: args,
        } => {
            let pairs = params
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .with_context(|| format!("'{p}' is not name=value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let answer = client(&args).await?.lookup(&dataset, &pairs).await?;
            print(&args, &answer, show::lookup);
        }
        Command::Datasets { client: args } => {
            let catalogue = client(&args).await?.get("/datasets").await?;
            print(&args, &catalogue, show::datasets);
        }
    }
    Ok(())
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}
