//! A packaging checkpoint as the control table keeps it: the upload, how many whole parts it
//! has, the next entry, the staged tail, and the zip directory so far packed to 12 bytes an
//! entry (the rest of each directory entry follows from the manifest).

use super::entry_name;
use super::format::DirectoryEntry;
use super::package::{entry_size, reject, zip_layout, Packaging};
use crate::domain::{Archive, ObjectRef};
use crate::ports::{ObjectStore, PortResult, SavedCheckpoint, UploadedPart};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The checkpoint's body, as saved in the control table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) upload_id: String,
    pub(super) part_size: u64,
    /// How many whole parts were uploaded; their ETags are listed from the store on resume.
    #[serde(default)]
    pub(super) part_count: u32,
    /// The parts themselves, as checkpoints saved them before they counted them instead: such a
    /// checkpoint's archive is written anew.
    #[serde(default, skip_serializing)]
    pub(super) parts: Vec<UploadedPart>,
    pub(super) next_entry: usize,
    /// Archive bytes written so far: the parts, then the staged tail.
    pub(super) written: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tail: Option<ObjectRef>,
    /// zip only: each written entry's CRC-32 and compressed size (12 bytes, little-endian),
    /// base64; the rest of its directory entry follows from the manifest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) directory: String,
}

/// Aborts the multipart upload and removes the staged tail a saved checkpoint holds: for a
/// job given up while being packaged.
pub async fn discard(objects: &dyn ObjectStore, target: &ObjectRef, saved: &SavedCheckpoint) {
    let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&saved.body) else {
        return;
    };
    if let Err(e) = objects.abort_multipart(target, &checkpoint.upload_id).await {
        tracing::warn!(error = %e, "could not abort the archive's upload");
    }
    if let Some(tail) = &checkpoint.tail {
        let _ = objects.delete(tail).await;
    }
}

pub(super) fn encode_directory(directory: &[DirectoryEntry]) -> String {
    let mut packed = Vec::with_capacity(directory.len() * 12);
    for entry in directory {
        packed.extend_from_slice(&entry.crc.to_le_bytes());
        packed.extend_from_slice(&entry.compressed.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(packed)
}

/// The directory of the entries a checkpoint covers, their sizes from the manifest and their
/// offsets added up from the start.
pub(super) fn decode_directory(
    run: &Packaging<'_>,
    checkpoint: &Checkpoint,
) -> PortResult<Vec<DirectoryEntry>> {
    if run.kind != Archive::Zip {
        return Ok(Vec::new());
    }
    let packed = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&checkpoint.directory)
        .map_err(|e| reject(format!("checkpoint directory: {e}")))?;
    if packed.len() != checkpoint.next_entry * 12
        || checkpoint.next_entry > run.manifest.entries.len()
    {
        return Err(reject("checkpoint directory does not match its entries"));
    }
    let layout = zip_layout(run);
    let mut offset = 0;
    let mut directory = Vec::with_capacity(checkpoint.next_entry);
    for (index, record) in packed.chunks_exact(12).enumerate() {
        let entry = DirectoryEntry {
            crc: u32::from_le_bytes(record[..4].try_into().expect("4 bytes")),
            compressed: u64::from_le_bytes(record[4..].try_into().expect("8 bytes")),
            size: entry_size(run.manifest, index),
            offset,
        };
        offset += layout.entry_span(&entry_name(run.dataset, index, run.extension), &entry);
        directory.push(entry);
    }
    Ok(directory)
}
