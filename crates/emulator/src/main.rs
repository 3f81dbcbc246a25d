//! Runs an emulated AWS stack until interrupted and prints the variables that point the
//! function binaries (or the CLI) at it. Standard output carries those `export NAME='…'` lines
//! alone, every log line goes to standard error, so a shell can source what it printed:
//! `cargo run -p export-emulator > emulator.env &`, then `. ./emulator.env`.

use clap::Parser;
use export_emulator::{Emulator, EmulatorOptions, Moto};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    about = "Emulated AWS for the export functions: moto, a Redshift Data API, the resources"
)]
struct Args {
    /// Where the warehouse keeps its generated tables and statement log.
    #[arg(long, default_value = ".export-emulator")]
    data_dir: PathBuf,
    #[arg(long, default_value = "sql")]
    sql_dir: PathBuf,
    /// TPC-H scale for `orders` and `lineitem`.
    #[arg(long, default_value_t = 0.01)]
    scale: f64,
    #[arg(long, default_value = "export")]
    prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let moto = Moto::start()?;
    let mut options = EmulatorOptions::new(&args.prefix, args.data_dir, args.sql_dir);
    options.data_api.scale = args.scale;
    let emulator = Emulator::start(&moto.endpoint, options).await?;
    for (name, value) in emulator.process_variables() {
        println!("export {name}='{value}'");
    }
    eprintln!("emulated stack ready; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
