//! `serve`, `demo` and `console`: the local stack until Ctrl-C, the demo's two exports, and
//! the console for a deployed API.

use anyhow::Context;
use clap::Args;
use export_client::CredentialChain;
use export_console::{Console, Credentials, Identity};
use export_local::{LocalStack, StackOptions};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub stack: StackOptions,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

#[derive(Args)]
pub struct ConsoleArgs {
    /// The API's base URL, with its stage.
    #[arg(long, env = "EXPORT_ENDPOINT")]
    pub endpoint: String,
    /// Where the console listens: a loopback address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Region to sign for (default: the chain's, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.stack.config().map_err(anyhow::Error::msg)?;
    config.addr = args.addr;
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
    println!("Catalogue: {}", config.sql.describe());
    let stack = LocalStack::start(config).await?;
    println!(
        "Local stack on {} — sign as alice (LOCALALICE / local-alice-secret) or bob; Ctrl-C stops.",
        stack.base_url()
    );
    println!("Console: {}", stack.console_url());
    tokio::signal::ctrl_c().await?;
    println!("Stopping: finishing the messages in hand …");
    stack.stop().await;
    Ok(())
}

pub async fn demo(stack: StackOptions) -> anyhow::Result<()> {
    redshift_export::demo::run(stack.config().map_err(anyhow::Error::msg)?).await
}

pub async fn console(args: ConsoleArgs) -> anyhow::Result<()> {
    let ConsoleArgs {
        endpoint,
        addr,
        region,
    } = args;
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
    Ok(())
}
