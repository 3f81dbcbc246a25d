//! Packaging: the parts an UNLOAD wrote, streamed into one archive object.
//!
//! Memory stays bounded whatever the export's size: each part is read as a stream, compressed
//! block by block on every core ([`deflate`]), framed as zip or tar.gz entries ([`format`]),
//! and cut into the parts of a multipart upload that can be carried on by the next invocation
//! ([`package`]).

mod checkpoint;
pub mod deflate;
pub mod format;
pub mod package;
mod sink;

pub use checkpoint::discard;
pub use package::{package, Packaging, Packed, Progress};

use crate::domain::ObjectRef;
use crate::ports::{ObjectStore, PortError, PortResult};
use futures::StreamExt;
use serde::Deserialize;

/// Redshift's `MANIFEST VERBOSE` file, as far as packaging needs it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
    #[serde(default)]
    pub meta: Option<ManifestMeta>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ManifestEntry {
    pub url: String,
    #[serde(default)]
    pub meta: Option<ManifestMeta>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ManifestMeta {
    #[serde(default)]
    pub content_length: u64,
    #[serde(default)]
    pub record_count: u64,
}

impl Manifest {
    /// The data rows the files hold. With `HEADER`, Redshift's `record_count` includes each
    /// file's header line ("UNLOAD", Amazon Redshift Database Developer Guide, MANIFEST
    /// VERBOSE), and every file has one.
    pub fn data_rows(&self, header_lines: bool) -> u64 {
        let counted = match &self.meta {
            Some(meta) => meta.record_count,
            None => self
                .entries
                .iter()
                .filter_map(|e| e.meta.as_ref())
                .map(|m| m.record_count)
                .sum(),
        };
        let headers = if header_lines {
            self.entries.len() as u64
        } else {
            0
        };
        counted.saturating_sub(headers)
    }
}

impl Manifest {
    /// The bytes the parts hold together.
    pub fn content_length(&self) -> u64 {
        match &self.meta {
            Some(meta) if meta.content_length > 0 => meta.content_length,
            _ => self
                .entries
                .iter()
                .filter_map(|e| e.meta.as_ref())
                .map(|m| m.content_length)
                .sum(),
        }
    }

    /// The data rows of entry `index` (its header line, if any, not counted).
    pub fn entry_rows(&self, index: usize, header_lines: bool) -> u64 {
        let counted = self.entries[index]
            .meta
            .as_ref()
            .map_or(0, |m| m.record_count);
        counted.saturating_sub(u64::from(header_lines))
    }
}

/// Reads a whole (small) object, such as a manifest.
pub async fn read_object(objects: &dyn ObjectStore, object: &ObjectRef) -> PortResult<Vec<u8>> {
    let mut stream = objects.get(object).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

pub async fn read_manifest(objects: &dyn ObjectStore, object: &ObjectRef) -> PortResult<Manifest> {
    let bytes = read_object(objects, object).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PortError::Rejected(format!("manifest {} is not valid: {e}", object.s3_url())))
}

/// What packaging produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packaged {
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
}

/// The name a part gets inside the archive: `<dataset>-0000.csv.gz`, … (UNLOAD's own part
/// names carry no format, so the job's format and compression name the file).
pub fn entry_name(dataset: &str, index: usize, extension: &str) -> String {
    format!("{dataset}-{index:04}.{extension}")
}
