//! `export-devtools bench-lookups`: signed lookups of one customer each
//! (`GET /lookups/customers?ids=<id>`) from concurrent clients, in the two modes a point-lookup API is load-tested in: every request a new id
//! (the cache never helps), and each client asking for the same few ids again (the cache
//! answers). Against the local stack by default, or any deployed API with `--endpoint` and
//! the standard credential chain. Writes a table and an SVG chart of the latencies.

use crate::bench::{alice, ms, percentile};
use anyhow::Context;
use bytes::Bytes;
use export_client::{Client, Signer};
use export_local::{LocalConfig, LocalStack};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use plotters::prelude::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct LookupBenchOptions {
    /// A deployed API's base URL (with its stage); signed with the AWS credential chain.
    /// Without it, a local stack is started for the run.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region to sign for with `--endpoint` (default: the chain's, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Concurrent signed clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Requests in the uncached mode, across all clients (it needs as many distinct ids).
    #[arg(long, default_value_t = 8000)]
    pub requests: usize,
    /// Requests in each of the cached and floor modes, across all clients: more than the
    /// uncached mode's, as they are answered several times as fast and a run of a fraction
    /// of a second is at the mercy of whatever else the machine does in it.
    #[arg(long, default_value_t = 40000)]
    pub repeated_requests: usize,
    /// Stop a mode after this long even if not every request was sent.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// Distinct ids each client repeats in the cached mode.
    #[arg(long, default_value_t = 4)]
    pub repeated_ids: usize,
    /// The ids to look up: a CSV file whose first column holds them, after a header line.
    #[arg(long, default_value = "sql/demo/customer_ids.csv")]
    pub ids: PathBuf,
    /// The local stack's demo schema and catalogue (without `--endpoint`).
    #[arg(long, default_value = "sql")]
    pub sql_dir: PathBuf,
    /// The local stack's scratch directory lives beside this one.
    #[arg(long, default_value = ".export-local")]
    pub data_dir: PathBuf,
    /// Write the report (markdown) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the latency chart (SVG) here.
    #[arg(long, default_value = "docs/lookup-latency.svg")]
    pub chart: PathBuf,
    /// Sign each request as it is sent, on the clients' share of the two cores, instead of
    /// every request of a mode before its clock starts (the earlier way, for comparison).
    #[arg(long)]
    pub sign_as_sent: bool,
    /// The modes to run, comma-separated (one alone is easier to profile).
    #[arg(long, value_delimiter = ',', default_values = ["uncached", "cached", "floor"])]
    pub modes: Vec<Mode>,
}

/// What each client's requests ask for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every request a new id: the cache never helps.
    Uncached,
    /// Each client cycles through a few ids of its own: the cache answers.
    Cached,
    /// For scale, `GET /datasets`: signing, checking signatures and HTTP, no lookup.
    Floor,
}

/// One mode's run: every latency, sorted, and how long the mode took.
struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    wall: Duration,
    cached_answers: usize,
}

/// Ids looked up before the runs (the last of the file's), which no run asks for.
const WARM_UP: usize = 20;

pub async fn run(options: LookupBenchOptions) -> anyhow::Result<()> {
    let ids = read_ids(&options.ids)?;
    anyhow::ensure!(
        ids.len() >= options.requests + WARM_UP || !options.modes.contains(&Mode::Uncached),
        "{} holds {} ids; the uncached mode needs one per request ({}) and {WARM_UP} to warm up",
        options.ids.display(),
        ids.len(),
        options.requests
    );
    let mut local = None;
    let (target, described) = match &options.endpoint {
        Some(endpoint) => (
            Target::Endpoint(Client::new(
                endpoint,
                Signer::from_environment(options.region.clone()).await?,
            )?),
            endpoint.clone(),
        ),
        None => {
            let scratch = options
                .data_dir
                .with_file_name(format!(".export-bench-lookups-{}", std::process::id()));
            let mut config = LocalConfig::new(
                scratch.clone(),
                export_local::sql_source::SqlSource::Dir(options.sql_dir.clone()),
            );
            config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
            // Lookups only: no workers competing for the cores; and no cap on lookups at once,
            // so what is measured is the read path, not how many it lets through.
            config.processors = 0;
            config.pollers = 0;
            config.lookups.slots = None;
            let stack = LocalStack::start(config).await?;
            let target = Target::Local {
                client: Client::new(&stack.base_url(), alice()?)?,
                addr: stack.addr,
            };
            let described = format!("the local stack ({})", stack.base_url());
            local = Some((stack, scratch));
            (target, described)
        }
    };
    // Warm-up on ids the runs do not use: connections, the engine's caches.
    let mut warm = Connection::open(&target).await?;
    let (ids, warm_up) = ids.split_at(ids.len().saturating_sub(WARM_UP));
    for id in warm_up {
        lookup(&mut warm, *id).await?;
    }
    let budget = Duration::from_secs(options.max_seconds);
    let per_client = options.requests.div_ceil(options.clients);
    // Uncached: each request a new id, dealt so no two requests share one.
    let fresh: Vec<Vec<i64>> = (0..options.clients)
        .map(|c| {
            ids.iter()
                .skip(c)
                .step_by(options.clients)
                .take(per_client)
                .copied()
                .collect()
        })
        .collect();
    let mut runs = Vec::new();
    if options.modes.contains(&Mode::Uncached) {
        runs.push(
            drive(
                &target,
                options.sign_as_sent,
                "every request a new id",
                fresh,
                budget,
            )
            .await?,
        );
    }
    // Cached: each client cycles through a few ids of its own (taken from the ones the
    // uncached run asks for first; without it, looked up once before the run), so they are
    // cached from the first request.
    let repeated: Vec<Vec<i64>> = (0..options.clients)
        .map(|c| {
            let own: Vec<i64> = (0..options.repeated_ids)
                .map(|k| ids[(c * options.repeated_ids + k) % ids.len()])
                .collect();
            (0..options.repeated_requests.div_ceil(options.clients))
                .map(|i| own[i % own.len()])
                .collect()
        })
        .collect();
    if options.modes.contains(&Mode::Cached) {
        if !options.modes.contains(&Mode::Uncached) {
            for own in &repeated {
                for id in own.iter().take(options.repeated_ids) {
                    lookup(&mut warm, *id).await?;
                }
            }
        }
        runs.push(
            drive(
                &target,
                options.sign_as_sent,
                "ids repeated per client",
                repeated.clone(),
                budget,
            )
            .await?,
        );
    }
    // For scale: the same clients on a route that looks nothing up (the catalogue), so what
    // signing, checking signatures and HTTP cost on this machine is seen apart.
    if options.modes.contains(&Mode::Floor) {
        let name = "for scale: GET /datasets, no lookup";
        runs.push(
            drive_path(
                &target,
                options.sign_as_sent,
                name,
                "/datasets",
                repeated,
                budget,
            )
            .await?,
        );
    }
    if let Some((stack, scratch)) = local {
        stack.stop().await;
        let _ = std::fs::remove_dir_all(scratch);
    }

    let report = report(&options, &described, &runs);
    println!("{report}");
    if let Some(path) = &options.report {
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    chart(&options.chart, options.clients, &runs)?;
    println!("chart: {}", options.chart.display());
    Ok(())
}

/// Each client sends its ids one after another; all clients at once, on a runtime of their
/// own (as separate client processes would be), so the server's scheduling is not theirs.
async fn drive(
    target: &Target,
    sign_as_sent: bool,
    name: &'static str,
    per_client: Vec<Vec<i64>>,
    budget: Duration,
) -> anyhow::Result<Run> {
    drive_requests(target, sign_as_sent, name, None, per_client, budget).await
}

/// As [`drive`], each request a signed GET of `path` instead of a lookup.
async fn drive_path(
    target: &Target,
    sign_as_sent: bool,
    name: &'static str,
    path: &'static str,
    per_client: Vec<Vec<i64>>,
    budget: Duration,
) -> anyhow::Result<Run> {
    drive_requests(target, sign_as_sent, name, Some(path), per_client, budget).await
}

/// The path of one request: a lookup of customer `id`, or `path`.
fn request_path(path: Option<&str>, id: i64) -> String {
    match path {
        Some(path) => path.to_owned(),
        None => format!("/lookups/customers?ids={id}"),
    }
}

async fn drive_requests(
    target: &Target,
    sign_as_sent: bool,
    name: &'static str,
    path: Option<&'static str>,
    per_client: Vec<Vec<i64>>,
    budget: Duration,
) -> anyhow::Result<Run> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Named apart from the server's workers, so a profile splits the two.
            .thread_name("bench-client")
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            // Each client's connection, and its requests signed now unless told otherwise:
            // a signature made before the clock starts is still good when it is sent.
            let mut clients = Vec::new();
            for ids in per_client {
                let connection = Connection::open(&target).await?;
                let requests = ids
                    .into_iter()
                    .map(|id| {
                        let path = request_path(path, id);
                        let signed = if sign_as_sent {
                            None
                        } else {
                            Some(connection.sign(&path)?)
                        };
                        anyhow::Ok((id, path, signed))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                clients.push((connection, requests));
            }
            let started = Instant::now();
            let deadline = started + budget;
            let mut tasks = Vec::new();
            for (mut connection, requests) in clients {
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(requests.len());
                    let mut cached = 0;
                    for (id, request_path, signed) in requests {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let t = Instant::now();
                        let signed = match signed {
                            Some(signed) => signed,
                            None => connection.sign(&request_path)?,
                        };
                        let (status, body) = connection.send(&request_path, &signed).await?;
                        let from_cache = match path {
                            None => lookup_answer(id, status, &body)?,
                            Some(path) => {
                                anyhow::ensure!(status.is_success(), "{path}: {status}");
                                false
                            }
                        };
                        latencies.push(t.elapsed());
                        cached += usize::from(from_cache);
                    }
                    anyhow::Ok((latencies, cached))
                }));
            }
            let mut latencies = Vec::new();
            let mut cached_answers = 0;
            for task in tasks {
                let (l, c) = task.await??;
                latencies.extend(l);
                cached_answers += c;
            }
            let wall = started.elapsed();
            latencies.sort();
            anyhow::Ok(Run {
                name,
                latencies,
                wall,
                cached_answers,
            })
        })
    })
    .await?
}

/// Where the clients send their requests.
#[derive(Clone)]
enum Target {
    /// A deployed API, through the CLI's client (TLS, its pool of connections).
    Endpoint(Client),
    /// The local stack: each client on a keep-alive connection of its own, as a load
    /// generator's threads hold one, so the clients' share of the cores goes to signing
    /// and reading answers rather than to a pool's bookkeeping.
    Local { client: Client, addr: SocketAddr },
}

/// One client's way to the API.
enum Connection {
    Pooled(Client),
    Own {
        /// Signs as the CLI does (the SDK's SigV4 signer).
        client: Client,
        base: String,
        host: String,
        send: SendRequest<Full<Bytes>>,
    },
}

impl Connection {
    async fn open(target: &Target) -> anyhow::Result<Connection> {
        match target {
            Target::Endpoint(client) => Ok(Connection::Pooled(client.clone())),
            Target::Local { client, addr } => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (send, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await?;
                tokio::spawn(connection);
                Ok(Connection::Own {
                    client: client.clone(),
                    base: format!("http://{addr}"),
                    host: addr.to_string(),
                    send,
                })
            }
        }
    }

    /// A GET of `path`, signed now: its headers, or the whole request for the pool.
    fn sign(&self, path: &str) -> anyhow::Result<Signed> {
        match self {
            Connection::Pooled(client) => Ok(Signed::Request(client.signed_request(
                Method::GET,
                path,
                Vec::new(),
                &[],
            )?)),
            Connection::Own {
                client, base, host, ..
            } => {
                let unsigned = [("host".to_owned(), host.clone())];
                let signed = client.sign("GET", &format!("{base}{path}"), &unsigned, &[])?;
                Ok(Signed::Headers(
                    unsigned.into_iter().chain(signed).collect(),
                ))
            }
        }
    }

    /// Sends the GET of `path` as `signed` signed it: the status and the body.
    async fn send(&mut self, path: &str, signed: &Signed) -> anyhow::Result<(StatusCode, Bytes)> {
        match (self, signed) {
            (Connection::Pooled(client), Signed::Request(request)) => {
                let reply = client.send_signed(request).await?;
                Ok((reply.status, reply.body))
            }
            (Connection::Own { send, .. }, Signed::Headers(headers)) => {
                let mut request = http::Request::get(path);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                send.ready().await?;
                let response = send
                    .send_request(request.body(Full::new(Bytes::new()))?)
                    .await?;
                let status = response.status();
                Ok((status, response.into_body().collect().await?.to_bytes()))
            }
            _ => anyhow::bail!("a request signed for another kind of connection"),
        }
    }
}

/// One lookup of customer `id`, signed as it is sent; whether a cache answered it.
async fn lookup(connection: &mut Connection, id: i64) -> anyhow::Result<bool> {
    let path = request_path(None, id);
    let signed = connection.sign(&path)?;
    let (status, body) = connection.send(&path, &signed).await?;
    lookup_answer(id, status, &body)
}

/// A request signed for one connection's way to the API.
enum Signed {
    Headers(Vec<(String, String)>),
    Request(export_client::SignedRequest),
}

/// The answer to a lookup of customer `id`, checked; whether a cache answered it.
fn lookup_answer(id: i64, status: StatusCode, body: &Bytes) -> anyhow::Result<bool> {
    anyhow::ensure!(
        status.is_success(),
        "customer {id}: {status} {}",
        String::from_utf8_lossy(body)
    );
    let answer: export_api::LookupAnswer = serde_json::from_slice(body)
        .with_context(|| format!("customer {id}: {}", String::from_utf8_lossy(body)))?;
    anyhow::ensure!(
        answer.row_count == 1,
        "customer {id}: {} rows",
        answer.row_count
    );
    Ok(answer.cached)
}

fn read_ids(path: &Path) -> anyhow::Result<Vec<i64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let first = l.split(',').next().unwrap_or("").trim();
            first
                .parse()
                .with_context(|| format!("{}: '{first}' is not an id", path.display()))
        })
        .collect()
}

fn report(options: &LookupBenchOptions, target: &str, runs: &[Run]) -> String {
    let mut out = format!(
        "Lookups of one customer each (`GET /lookups/customers?ids=<id>`), signed {}, from {} concurrent clients against {target}:\n\n\
         | mode | requests | answered from a cache | median | P90 | P95 | P99 | throughput |\n|---|---|---|---|---|---|---|---|\n",
        if options.sign_as_sent { "as each was sent" } else { "before the clock started" },
        options.clients
    );
    for run in runs {
        out.push_str(&format!(
            "| {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {:.0} /s |\n",
            run.name,
            run.latencies.len(),
            run.cached_answers,
            ms(percentile(&run.latencies, 50.0)),
            ms(percentile(&run.latencies, 90.0)),
            ms(percentile(&run.latencies, 95.0)),
            ms(percentile(&run.latencies, 99.0)),
            run.latencies.len() as f64 / run.wall.as_secs_f64(),
        ));
    }
    out
}

/// The latency distributions as an SVG: the share of requests answered within each time.
fn chart(path: &Path, clients: usize, runs: &[Run]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let slowest = runs
        .iter()
        .map(|r| percentile(&r.latencies, 99.0).as_secs_f64() * 1000.0)
        .fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Lookup latency, {clients} concurrent clients"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        // A log scale: cached and uncached latencies lie an order of magnitude apart.
        .build_cartesian_2d((0.1..slowest * 1.2).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("requests answered (%)")
        .draw()?;
    for (run, colour) in runs.iter().zip([RED, BLUE, BLACK]) {
        // The distribution at every 0.1%: a thousand points a line, however many requests.
        let points: Vec<(f64, f64)> = (1..=1000)
            .map(|k| {
                let share = k as f64 / 10.0;
                (
                    percentile(&run.latencies, share).as_secs_f64() * 1000.0,
                    share,
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(run.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
