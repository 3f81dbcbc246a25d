//! Packaging: the parts an UNLOAD wrote, streamed into one archive object.
//!
//! Memory stays bounded by the read chunk plus the upload's part buffer, whatever the export's
//! size: each part is read as a stream, fed through the archive encoder into a small buffer,
//! and that buffer is drained into the object store's multipart upload as it fills.

use crate::domain::{Archive, ObjectRef};
use crate::ports::{ObjectStore, PortError, PortResult, Upload};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::io::Write;
use std::sync::{Arc, Mutex};

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

/// A `Write` that synchronous encoders write into, drained by the async side between writes
/// into an upload: the bridge that keeps memory bounded.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written since the last call.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The two archive encoders, behind one streaming interface. There is one per archive, so the
/// variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Encoder {
    Zip(zip::ZipWriter<zip::write::StreamWriter<SharedBuffer>>),
    TarGz {
        gz: flate2::write::GzEncoder<SharedBuffer>,
        entry_remaining: u64,
        entry_size: u64,
    },
}

fn io_error(e: impl std::fmt::Display) -> PortError {
    PortError::Rejected(format!("archive encoding failed: {e}"))
}

impl Encoder {
    fn new(kind: Archive, sink: SharedBuffer) -> Encoder {
        match kind {
            Archive::Zip => Encoder::Zip(zip::ZipWriter::new_stream(sink)),
            Archive::TarGz => Encoder::TarGz {
                gz: flate2::write::GzEncoder::new(sink, flate2::Compression::fast()),
                entry_remaining: 0,
                entry_size: 0,
            },
        }
    }

    fn start_entry(&mut self, name: &str, size: u64, already_compressed: bool) -> PortResult<()> {
        match self {
            Encoder::Zip(zip) => {
                // Level 1, as for tar.gz: text parts still shrink several times over, at a
                // fraction of the default level's CPU time (a function's time is its cost).
                let (method, level) = if already_compressed {
                    (zip::CompressionMethod::Stored, None)
                } else {
                    (zip::CompressionMethod::Deflated, Some(1))
                };
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(method)
                    .compression_level(level)
                    .large_file(size >= u32::MAX as u64);
                zip.start_file(name, options).map_err(io_error)
            }
            Encoder::TarGz {
                gz,
                entry_remaining,
                entry_size,
            } => {
                // A tar header needs the size up front: it comes from the manifest.
                let mut header = tar::Header::new_gnu();
                header.set_path(name).map_err(io_error)?;
                header.set_size(size);
                header.set_mode(0o644);
                header.set_mtime(chrono::Utc::now().timestamp() as u64);
                header.set_cksum();
                gz.write_all(header.as_bytes()).map_err(io_error)?;
                *entry_remaining = size;
                *entry_size = size;
                Ok(())
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> PortResult<()> {
        match self {
            Encoder::Zip(zip) => zip.write_all(data).map_err(io_error),
            Encoder::TarGz {
                gz,
                entry_remaining,
                ..
            } => {
                if data.len() as u64 > *entry_remaining {
                    return Err(PortError::Rejected(
                        "a part is longer than its manifest entry says".into(),
                    ));
                }
                *entry_remaining -= data.len() as u64;
                gz.write_all(data).map_err(io_error)
            }
        }
    }

    fn end_entry(&mut self) -> PortResult<()> {
        if let Encoder::TarGz {
            gz,
            entry_remaining,
            entry_size,
        } = self
        {
            if *entry_remaining != 0 {
                return Err(PortError::Rejected(
                    "a part is shorter than its manifest entry says".into(),
                ));
            }
            let padding = (512 - (*entry_size % 512) as usize) % 512;
            gz.write_all(&vec![0; padding]).map_err(io_error)?;
        }
        Ok(())
    }

    fn finish(self) -> PortResult<()> {
        match self {
            Encoder::Zip(zip) => zip.finish().map(drop).map_err(io_error),
            Encoder::TarGz { mut gz, .. } => {
                gz.write_all(&[0; 1024]).map_err(io_error)?;
                gz.finish().map(drop).map_err(io_error)
            }
        }
    }
}

/// The name a part gets inside the archive: `<dataset>-0000.csv.gz`, … (UNLOAD's own part
/// names carry no format, so the job's format and compression name the file).
pub fn entry_name(dataset: &str, index: usize, extension: &str) -> String {
    format!("{dataset}-{index:04}.{extension}")
}

/// Streams every part named by `manifest` into one archive at `target`.
/// `extension` is what the parts are, e.g. `csv.gz`; `header_lines`, whether each starts with
/// one.
pub async fn package(
    objects: &dyn ObjectStore,
    manifest: &Manifest,
    dataset: &str,
    extension: &str,
    header_lines: bool,
    kind: Archive,
    target: &ObjectRef,
) -> PortResult<Packaged> {
    let mut upload = objects.start_upload(target, kind.content_type()).await?;
    match write_entries(objects, manifest, dataset, extension, kind, upload.as_mut()).await {
        Ok(()) => {
            let bytes = upload.complete().await?;
            Ok(Packaged {
                rows: manifest.data_rows(header_lines),
                bytes,
                files: manifest.entries.len(),
            })
        }
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, "could not abort the archive upload");
            }
            Err(e)
        }
    }
}

async fn write_entries(
    objects: &dyn ObjectStore,
    manifest: &Manifest,
    dataset: &str,
    extension: &str,
    kind: Archive,
    upload: &mut dyn Upload,
) -> PortResult<()> {
    let sink = SharedBuffer::default();
    let mut encoder = Encoder::new(kind, sink.clone());
    let already_compressed =
        extension.ends_with(".gz") || extension.ends_with(".zst") || extension == "parquet";
    for (index, entry) in manifest.entries.iter().enumerate() {
        let part = ObjectRef::parse_s3_url(&entry.url).ok_or_else(|| {
            PortError::Rejected(format!("manifest entry {} is not an s3:// URL", entry.url))
        })?;
        let size = entry.meta.as_ref().map_or(0, |m| m.content_length);
        let name = entry_name(dataset, index, extension);
        encoder.start_entry(&name, size, already_compressed)?;
        let mut stream = objects.get(&part).await?;
        while let Some(chunk) = stream.next().await {
            encoder.write(&chunk?)?;
            let pending = sink.take();
            if !pending.is_empty() {
                upload.write(Bytes::from(pending)).await?;
            }
        }
        encoder.end_entry()?;
    }
    encoder.finish()?;
    let rest = sink.take();
    if !rest.is_empty() {
        upload.write(Bytes::from(rest)).await?;
    }
    Ok(())
}
