//! The `redshift-export` command: a SigV4 client for the export API (any endpoint), the local
//! stack's launcher, and the demo. The benchmarks live in the `export-devtools` package.

pub mod demo;
pub mod show;

use anyhow::Context;
use export_client::Signer;

/// The signer for one of the local stack's identities (`alice`, `bob`).
pub fn local_signer(name: &str) -> anyhow::Result<Signer> {
    let identity = export_local::sigv4::LocalIdentity::demo_named(name)
        .with_context(|| format!("no local identity '{name}' (try alice or bob)"))?;
    Ok(Signer::with_keys(
        &identity.access_key,
        &identity.secret_key,
        export_local::sigv4::REGION,
    ))
}
