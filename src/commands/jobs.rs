//! A caller's jobs: `submit`, `status`, `wait`, `download`, `cancel` and `list`.

use super::ClientArgs;
use anyhow::Context;
use clap::Args;
use export_api::{Archive, Compression, Format, JobStatus};
use redshift_export::show;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct SubmitArgs {
    pub dataset: String,
    /// A parameter, name=value (a list comma-separated, or the parameter repeated); the API
    /// types it by the catalogue.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    #[arg(long)]
    pub format: Option<Format>,
    #[arg(long)]
    pub compression: Option<Compression>,
    #[arg(long)]
    pub archive: Option<Archive>,
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
    /// Another caller's jobs, by the owner the API names (an IAM ARN): for an admin of the
    /// access policy.
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    // Sent as a form: the API types each value by the dataset's declaration, as it does a
    // lookup's query string.
    let params = args
        .params
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("parameter '{pair}' must be name=value"))?;
            Ok((format!("params.{name}"), value))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let choices = [
        ("format", args.format.map(Format::as_str)),
        ("compression", args.compression.map(Compression::as_str)),
        ("archive", args.archive.map(Archive::as_str)),
    ];
    let mut fields = vec![("dataset", args.dataset.as_str())];
    fields.extend(params.iter().map(|(name, value)| (name.as_str(), *value)));
    fields.extend(
        choices
            .iter()
            .filter_map(|(name, value)| Some((*name, (*value)?))),
    );
    fields.extend(
        args.notify
            .iter()
            .map(|address| ("notify", address.as_str())),
    );
    let accepted = client
        .submit_form(&fields, args.idempotency_key.as_deref())
        .await?;
    args.client.print(&accepted, |accepted| {
        format!(
            "accepted: {} ({})\nfollow it with: redshift-export wait {}\n",
            accepted.request_id, accepted.status, accepted.request_id,
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
                s.summary.status.as_str()
            );
        })
        .await?;
    eprintln!();
    args.client.print(&status, show::job);
    anyhow::ensure!(
        status.summary.status == JobStatus::Succeeded,
        "the export ended {}",
        status.summary.status
    );
    Ok(())
}

pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let request_id = &args.request_id;
    let status = client.status(request_id).await?;
    if status.summary.archive == Archive::None && status.summary.status == JobStatus::Succeeded {
        let dir = args.output.unwrap_or_else(|| PathBuf::from(request_id));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let parts = client.all_parts(request_id).await?;
        for part in &parts {
            // Names are the service's own (`<dataset>-NNNN.<ext>`); keep only the last
            // component all the same.
            let file = dir.join(
                std::path::Path::new(&part.name)
                    .file_name()
                    .context("a part's name names no file")?,
            );
            let written = client.fetch_to(&part.url, &file).await?;
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
    args.client
        .print(&cancelled, |c| format!("{} {}\n", c.request_id, c.status));
    Ok(())
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.client.client().await?;
    let page = match &args.owner {
        Some(owner) => {
            client
                .jobs_of(owner, args.limit, args.cursor.as_deref())
                .await?
        }
        None => client.jobs(args.limit, args.cursor.as_deref()).await?,
    };
    args.client.print(&page, show::jobs);
    Ok(())
}
