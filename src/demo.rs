//! `redshift-export demo`: the whole path on the local stack, end to end, in one command.

use crate::{local_signer, show};
use anyhow::{bail, ensure, Context};
use export_api::JobStatus;
use export_client::unpack::unpack;
use export_client::Client;
use export_local::{LocalConfig, LocalStack};
use serde_json::json;
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
        let id = accepted.request_id;
        println!("  → 202 request_id {id}");
        let mut last = String::new();
        let status = client
            .wait(&id, Duration::from_secs(120), |s| {
                let now = s.summary.status.to_string();
                if now != last {
                    println!("  … {now}");
                    last = now;
                }
            })
            .await?;
        let job = status.summary;
        if job.status != JobStatus::Succeeded {
            bail!(
                "export {id} ended {}: {}",
                job.status,
                job.error.unwrap_or_default()
            );
        }
        println!(
            "  rows {}, archive {} bytes",
            job.rows.unwrap_or_default(),
            job.bytes.unwrap_or_default()
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
