//! The catalogue: `datasets`, `lookup` of the datasets that offer it, and `check` of a
//! catalogue before it is deployed.

use super::ClientArgs;
use anyhow::Context;
use clap::Args;
use export_local::sql_source::SqlSource;
use export_local::tables::{self, TableFile};
use redshift_export::show;
use std::path::PathBuf;

#[derive(Args)]
pub struct LookupArgs {
    pub dataset: String,
    /// A parameter, name=value (lists comma-separated).
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn lookup(args: LookupArgs) -> anyhow::Result<()> {
    let pairs = args
        .params
        .iter()
        .map(|p| {
            p.split_once('=')
                .with_context(|| format!("'{p}' is not name=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let answer = args
        .client
        .client()
        .await?
        .lookup(&args.dataset, &pairs)
        .await?;
    args.client.print(&answer, show::lookup);
    Ok(())
}

pub async fn datasets(client: ClientArgs) -> anyhow::Result<()> {
    let catalogue = client.client().await?.datasets().await?;
    client.print(&catalogue, show::datasets);
    Ok(())
}

pub async fn quota(client: ClientArgs) -> anyhow::Result<()> {
    let quota = client.client().await?.quota().await?;
    client.print(&quota, show::quota);
    Ok(())
}

#[derive(Args)]
pub struct CheckArgs {
    /// The catalogue to check: a directory with `catalog/*.sql`, and optionally `schema.sql`
    /// and `access.toml`. Without it, the demo's.
    #[arg(long, env = "EXPORT_SQL_DIR")]
    pub sql_dir: Option<PathBuf>,
    /// A table the catalogue reads, beside the schema's: `schema.name=path` (Parquet, or CSV
    /// with a header line).
    #[arg(long = "table")]
    pub tables: Vec<TableFile>,
}

/// Plans every entry on the local warehouse (the demo's TPC-H tables, empty, beside the
/// schema's and the given ones) and holds its UNLOAD to Redshift's rules; any problem is
/// printed with its file and line, and the exit status is not zero.
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let source = SqlSource::from_option(args.sql_dir.as_deref());
    let catalog = source.catalog()?;
    source.policy().map_err(anyhow::Error::msg)?;
    let session = source.session().await?;
    tables::register_tpch_empty(&session).await?;
    for table in &args.tables {
        tables::load_table_file(&session, table).await?;
    }
    let problems = export_local::check::check_catalogue(&session, &catalog).await;
    let count = catalog.exports().count();
    if problems.is_empty() {
        println!(
            "{}: {count} {} checked: each plans on the local warehouse, and its UNLOAD is one Redshift takes.",
            source.describe(),
            if count == 1 { "entry" } else { "entries" }
        );
        return Ok(());
    }
    for problem in &problems {
        println!("{problem}");
    }
    anyhow::bail!(
        "{} of {count} catalogue entries cannot run",
        problems
            .iter()
            .map(|p| &p.export)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    )
}
