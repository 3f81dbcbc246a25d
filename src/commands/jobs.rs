//! A caller's jobs: `submit`, `status`, `wait`, `download`, `cancel` and `list`.

use super::{text_of, ClientArgs};
use anyhow::Context;
use clap::Args;
use redshift_export::{demo, show};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct SubmitArgs {
    pub dataset: String,
    /// A parameter, name=value (lists comma-separated); typed from the catalogue.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
    #[arg(long)]
    pub compression: Option<String>,
    #[arg(long)]
    pub archive: Option<String>,
    #[arg(long)]
    pub notify: Vec<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct StatusArgs {
    pub request_id: String,
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct WaitArgs {
    pub request_id: String,
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct DownloadArgs {
    pub request_id: String,
    /// The archive's file, or the parts' directory.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct JobArgs {
    pub request_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let catalogue = client.get("/datasets").await.ok();
    let declared = catalogue.as_ref().and_then(|c| {
        c["datasets"]
            .as_array()?
            .iter()
            .find(|d| d["name"] == args.dataset.as_str())
    });
    let mut request = json!({
        "dataset": args.dataset,
        "params": demo::typed_params(&args.params, declared)?,
    });
    for (key, value) in [
        ("format", args.format),
        ("compression", args.compression),
        ("archive", args.archive),
    ] {
        if let Some(value) = value {
            request[key] = json!(value);
        }
    }
    if !args.notify.is_empty() {
        request["notify"] = json!(args.notify);
    }
    let accepted = client
        .submit(&request, args.idempotency_key.as_deref())
        .await?;
    args.client.print(&accepted, |accepted| {
        format!(
            "accepted: {} ({})\nfollow it with: redshift-export wait {}\n",
            text_of(&accepted["request_id"]),
            text_of(&accepted["status"]),
            text_of(&accepted["request_id"]),
        )
    });
    Ok(())
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    if args.all {
        let history = client.events(&args.request_id).await?;
        args.client.print(&history, show::history);
    } else {
        let job = client.status(&args.request_id).await?;
        args.client.print(&job, show::job);
    }
    Ok(())
}

pub async fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let started = std::time::Instant::now();
    let timeout = Duration::from_secs(args.timeout_secs);
    let status = client
        .wait(&args.request_id, timeout, |s| {
            eprint!(
                "\r{:>6.1}s  {:<10}",
                started.elapsed().as_secs_f64(),
                text_of(&s["status"])
            );
        })
        .await?;
    eprintln!();
    args.client.print(&status, show::job);
    anyhow::ensure!(
        status["status"] == "SUCCEEDED",
        "the export ended {}",
        status["status"]
    );
    Ok(())
}

pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let request_id = &args.request_id;
    let status = client.status(request_id).await?;
    if status["archive"] == "none" && status["status"] == "SUCCEEDED" {
        let dir = args.output.unwrap_or_else(|| PathBuf::from(request_id));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let parts = client.all_parts(request_id).await?;
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
    let link = client.download_link(request_id).await?;
    let name = link
        .split('?')
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("export.zip")
        .to_owned();
    let path = args.output.unwrap_or_else(|| PathBuf::from(&name));
    let bytes = client.fetch(&link).await?;
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    println!("{} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

pub async fn cancel(args: JobArgs) -> anyhow::Result<()> {
    let cancelled = args.client.client().await?.cancel(&args.request_id).await?;
    args.client.print(&cancelled, |c| {
        format!("{} {}\n", text_of(&c["request_id"]), text_of(&c["status"]))
    });
    Ok(())
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut query = vec![];
    if let Some(limit) = args.limit {
        query.push(format!("limit={limit}"));
    }
    if let Some(cursor) = &args.cursor {
        // Page tokens are base64url: nothing in them needs escaping in a query.
        query.push(format!("cursor={cursor}"));
    }
    let path = if query.is_empty() {
        "/exports".to_owned()
    } else {
        format!("/exports?{}", query.join("&"))
    };
    let page = args.client.client().await?.get(&path).await?;
    args.client.print(&page, show::jobs);
    Ok(())
}
