//! `redshift-export demo`: the whole path on the local stack, end to end, in one command.

use crate::{local_signer, show};
use anyhow::{bail, ensure, Context};
use export_client::unpack::unpack;
use export_client::Client;
use export_local::{LocalConfig, LocalStack};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

pub async fn run(mut config: LocalConfig) -> anyhow::Result<()> {
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    println!(
        "Starting the local stack (data in {}; its log in {}) …",
        config.data_dir.display(),
        config.data_dir.join("demo.log").display()
    );
    let stack = LocalStack::start(config).await?;
    let outcome = exercise(&stack).await;
    stack.stop().await;
    outcome
}

async fn exercise(stack: &LocalStack) -> anyhow::Result<()> {
    let client = Client::new(&stack.base_url(), local_signer("alice")?)?;
    println!(
        "Gateway on {}, signing as alice (SigV4, service execute-api).\n",
        stack.base_url()
    );

    let exports = [
        (
            "product_detail as CSV in a zip",
            json!({"dataset": "product_detail", "params": {"sku": "FLOWER12"}}),
        ),
        (
            "customers as gzipped JSON lines in a tar.gz",
            json!({"dataset": "customers", "params": {"ids": [1, 2, 3, 42, 1000]}, "format": "json", "compression": "gzip", "archive": "tar.gz", "notify": ["analyst@example.com"]}),
        ),
    ];
    let mut found_flower = false;
    for (label, request) in exports {
        println!("== {label}");
        println!("POST /exports {request}");
        let accepted = client.submit(&request, None).await?;
        let id = accepted["request_id"]
            .as_str()
            .context("no request_id in the answer")?
            .to_owned();
        println!("  → 202 request_id {id}");
        let mut last = String::new();
        let status = client
            .wait(&id, Duration::from_secs(120), |s| {
                let now = s["status"].as_str().unwrap_or("?").to_owned();
                if now != last {
                    println!("  … {now}");
                    last = now;
                }
            })
            .await?;
        if status["status"] != "SUCCEEDED" {
            bail!(
                "export {id} ended {}: {}",
                status["status"],
                status["error"]
            );
        }
        println!(
            "  rows {}, archive {} bytes",
            status["rows"], status["bytes"]
        );

        let history = client.events(&id).await?;
        for line in show::history(&history).lines() {
            println!("  {line}");
        }

        let link = client.download_link(&id).await?;
        println!("  download link: {link}");
        let archive = client.fetch(&link).await?;
        for file in unpack(&archive)? {
            println!("  --- {} ({} bytes)", file.name, file.contents.len());
            let text = String::from_utf8_lossy(&file.contents);
            for line in text.lines().take(8) {
                println!("  {line}");
            }
            found_flower |= text.lines().any(|l| l.starts_with("FLOWER12,12345,"));
        }

        let mail = read_mail(stack, &id)?;
        println!("  email in the outbox:");
        for line in mail.lines().filter(|l| !l.is_empty()).take(14) {
            println!("  | {line}");
        }
        println!();
    }
    ensure!(
        found_flower,
        "the FLOWER12 row was not in the downloaded archive"
    );
    println!("Demo complete: both exports ran, were packaged, linked and mailed.");
    Ok(())
}

/// The mail about `request_id`, as a mail reader shows it: who it went to, its subject and
/// its plain-text body.
fn read_mail(stack: &LocalStack, request_id: &str) -> anyhow::Result<String> {
    for entry in std::fs::read_dir(&stack.outbox)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(request_id))
        {
            let raw = std::fs::read(&path)?;
            let message = mail_parser::MessageParser::default()
                .parse(&raw)
                .with_context(|| format!("{} is not a mail", path.display()))?;
            let to: Vec<&str> = message
                .to()
                .map(|to| to.iter().filter_map(|a| a.address()).collect())
                .unwrap_or_default();
            return Ok(format!(
                "To: {}\nSubject: {}\n{}",
                to.join(", "),
                message.subject().unwrap_or(""),
                message.body_text(0).unwrap_or_default()
            ));
        }
    }
    bail!("no mail for {request_id} in {}", stack.outbox.display())
}

/// Reads `key=value` parameters, typed by the catalogue's declaration of each parameter.
pub fn typed_params(
    pairs: &[String],
    declared: Option<&Value>,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut params = serde_json::Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .with_context(|| format!("parameter '{pair}' must be name=value"))?;
        let type_name = declared
            .and_then(|d| d["params"].as_array())
            .and_then(|ps| ps.iter().find(|p| p["name"] == key))
            .and_then(|p| p["type"].as_str())
            .unwrap_or("text");
        params.insert(
            key.to_owned(),
            export_core::catalog::value_from_text(type_name, &[raw]),
        );
    }
    Ok(params)
}
