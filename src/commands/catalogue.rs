//! The catalogue: `datasets`, and `lookup` of the datasets that offer it.

use super::ClientArgs;
use anyhow::Context;
use clap::Args;
use redshift_export::show;

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
