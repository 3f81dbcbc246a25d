//! The CLI's commands, one module per kind: the local stack and the console (`stack`), a
//! caller's jobs (`jobs`), its subscriptions and webhooks (`subscriptions`, `webhook`), the
//! catalogue (`catalogue`), and the local audit record (`audit`). What they share is here: how a
//! command signs and where its answer goes.

pub mod audit;
pub mod catalogue;
pub mod jobs;
pub mod stack;
pub mod subscriptions;
pub mod webhook;

use clap::Args;
use export_client::{Client, Signer};
use redshift_export::local_signer;
use serde::Serialize;

/// How a client command reaches the API and prints its answer.
#[derive(Args)]
pub struct ClientArgs {
    /// The API's base URL (with its stage on API Gateway).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "EXPORT_ENDPOINT",
        global = true
    )]
    pub endpoint: String,
    /// Sign as a local demo identity (alice, bob) instead of the AWS credential chain.
    #[arg(long = "as", global = true)]
    pub identity: Option<String>,
    /// Region to sign for with AWS credentials (default: the chain's, else us-east-1).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Print the API's answers as JSON instead of for reading.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// A client signing as `--as` names, else with the AWS credential chain.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let signer = match &self.identity {
            Some(name) => local_signer(name)?,
            None => Signer::from_environment(self.region.clone()).await?,
        };
        Client::new(&self.endpoint, signer)
    }

    /// Prints an answer: as JSON with `--json`, else as `readable` renders it.
    pub fn print<T: Serialize>(&self, value: &T, readable: impl Fn(&T) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("JSON prints")
            );
        } else {
            print!("{}", readable(value));
        }
    }
}
