//! `verify-webhook`: checks a webhook notice's signature as a partner's receiver would, so a
//! partner can try its own check against this one.

use anyhow::Context;
use clap::Args;
use export_core::webhook::{verify, DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER};
use std::path::PathBuf;

#[derive(Args)]
pub struct VerifyWebhookArgs {
    /// The secret issued for the webhook.
    #[arg(long, env = "EXPORT_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The `Export-Signature` header's value, `t=…,v1=…`.
    #[arg(long)]
    pub signature: String,
    /// The body exactly as received: a file, or `-` for standard input.
    #[arg(long)]
    pub body: PathBuf,
    /// How old a notice may be, in seconds.
    #[arg(long, default_value_t = DEFAULT_TOLERANCE_SECONDS)]
    pub tolerance: i64,
}

pub fn verify_webhook(args: VerifyWebhookArgs) -> anyhow::Result<()> {
    let body = if args.body.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
        body
    } else {
        std::fs::read(&args.body).with_context(|| format!("reading {}", args.body.display()))?
    };
    let now = chrono::Utc::now().timestamp();
    verify(
        args.secret.as_bytes(),
        &args.signature,
        &body,
        now,
        args.tolerance,
    )
    .with_context(|| format!("the {SIGNATURE_HEADER} header does not verify"))?;
    println!(
        "The signature verifies: the body is as signed, within {} s.",
        args.tolerance
    );
    Ok(())
}
