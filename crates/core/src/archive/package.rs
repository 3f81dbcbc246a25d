//! Packaging that outlives one invocation. The archive is written as a multipart upload in
//! fixed-size parts; at an entry boundary the packager can stop and leave a checkpoint (the
//! upload and how many parts it has, the zip directory so far, the next entry, and the bytes
//! written since the last whole part, staged as an object of their own), and the next
//! invocation, or the packager that replaces a dead one, carries on from it. The archive's
//! bytes depend only on the manifest and the job, never on where the runs stopped, so an
//! interrupted archive is byte for byte the one an uninterrupted run writes, and two packagers
//! racing on one upload write the same parts.

use super::checkpoint::{decode_directory, discard, encode_directory, Checkpoint};
use super::deflate::{Coded, Deflaters, EntryCoder};
use super::format::{self, Coding, DirectoryEntry, ZipLayout};
use super::sink::PartSink;
use super::{entry_name, Manifest, Packaged};
use crate::domain::{Archive, Millis, ObjectRef};
use crate::ports::{ObjectStore, PortError, PortResult, SavedCheckpoint};
use crate::settings::PackagingSettings;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// S3 takes at most 10,000 parts ("Amazon S3 multipart upload limits"); the part size grows
/// with the archive so that its parts stay under this many, with room for an estimate that
/// falls short. A checkpoint counts the parts and leaves their ETags with S3 (`ListParts`), so
/// their number does not grow it.
pub const MAX_PARTS: u64 = 9_500;

/// The most entries a zip checkpoint can carry the directory of (a control-table item holds
/// at most 400 KB: 12 bytes an entry, base64-encoded).
pub const MAX_ZIP_ENTRIES: usize = 8_000;

/// What packaging one job needs.
pub struct Packaging<'a> {
    pub objects: Arc<dyn ObjectStore>,
    pub manifest: &'a Manifest,
    pub dataset: &'a str,
    /// What each part is, e.g. `csv.gz`: names the entries, and says whether they are
    /// compressed already.
    pub extension: &'a str,
    pub kind: Archive,
    pub target: &'a ObjectRef,
    /// Where the bytes past the last whole part are staged at a checkpoint (a key prefix).
    pub staging: &'a ObjectRef,
    /// The entries' modification time: fixed per job, so every run writes the same bytes.
    pub mtime: Millis,
    pub settings: &'a PackagingSettings,
    /// When this run must have stopped (the invocation's end), if it must.
    pub deadline: Option<Instant>,
    /// Whether each part starts with a header line, for the row count.
    pub header_lines: bool,
}

/// Where progress is recorded: the control table, through the poller.
#[async_trait]
pub trait Progress: Send + Sync {
    /// Saves checkpoint `next.seq` in place of number `expected_seq`; false if another
    /// packager (or a cancel) got there first.
    async fn save(&self, expected_seq: u64, next: &SavedCheckpoint) -> PortResult<bool>;
    /// Marks the job alive; false if it is no longer being packaged.
    async fn heartbeat(&self) -> PortResult<bool>;
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packed {
    /// The archive is complete.
    Done(Packaged),
    /// The run stopped short of its deadline and saved checkpoint `seq`; a continuation
    /// carries on from it.
    Paused { seq: u64 },
    /// Another packager saved first, or the job stopped being packaged: this run's work is
    /// not needed.
    Superseded,
}

/// Packages `run.manifest` into `run.target`, from `resume` if given.
pub async fn package(
    run: &Packaging<'_>,
    resume: Option<SavedCheckpoint>,
    progress: &dyn Progress,
) -> PortResult<Packed> {
    if !run.kind.is_packaged() {
        return Err(reject(
            "archive \"none\" hands out the parts; there is nothing to package",
        ));
    }
    if run.kind == Archive::Zip && run.manifest.entries.len() > MAX_ZIP_ENTRIES {
        return Err(PortError::Rejected(format!(
            "{} parts are more than a zip can be checkpointed with ({MAX_ZIP_ENTRIES}); ask for archive \"none\", or unload larger files",
            run.manifest.entries.len()
        )));
    }
    let base_seq = resume.as_ref().map_or(0, |c| c.seq);
    let state = match resume {
        Some(saved) => match Writer::resume(run, &saved).await {
            Ok(writer) => Some(writer),
            Err(PortError::NotFound(what)) => {
                tracing::warn!(
                    what,
                    "the checkpoint's upload or tail is gone; packaging from the start"
                );
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let resumed = state.is_some();
    let writer = match state {
        Some(writer) => writer,
        None => Writer::start(run, base_seq).await?,
    };
    match writer.run(run, progress).await {
        // The upload was completed or aborted behind the checkpoint (a run that died between
        // completing and recording, a lifecycle rule): write it again from the start.
        Err(PortError::NotFound(what)) if resumed => {
            tracing::warn!(
                what,
                "the checkpoint's upload is gone; packaging from the start"
            );
            Writer::start(run, base_seq).await?.run(run, progress).await
        }
        other => other,
    }
}

/// One run's packager: the archive so far and the upload it is going into.
struct Writer {
    seq: u64,
    next_entry: usize,
    directory: Vec<DirectoryEntry>,
    sink: PartSink,
    /// The staged tail of the checkpoint this run holds, removed once superseded.
    tail: Option<ObjectRef>,
    /// The upload was started by this run and no checkpoint names it yet: if another
    /// packager wins, nobody else will finish or abort it.
    owns_upload: bool,
    /// The threads that deflate, shared by every entry of the run.
    deflaters: Arc<Deflaters>,
}

impl Writer {
    async fn start(run: &Packaging<'_>, seq: u64) -> PortResult<Writer> {
        let upload_id = run
            .objects
            .create_multipart(run.target, run.kind.content_type())
            .await?;
        Ok(Writer {
            seq,
            next_entry: 0,
            directory: Vec::new(),
            sink: PartSink::new(
                run,
                upload_id,
                part_size(run),
                Vec::new(),
                0,
                BytesMut::new(),
            ),
            tail: None,
            owns_upload: true,
            deflaters: Deflaters::new(run.settings.threads),
        })
    }

    async fn resume(run: &Packaging<'_>, saved: &SavedCheckpoint) -> PortResult<Writer> {
        let checkpoint: Checkpoint = serde_json::from_str(&saved.body)
            .map_err(|e| PortError::Rejected(format!("packaging checkpoint is not valid: {e}")))?;
        let tail = match &checkpoint.tail {
            Some(object) => {
                BytesMut::from(&super::read_object(run.objects.as_ref(), object).await?[..])
            }
            None => BytesMut::new(),
        };
        if !checkpoint.parts.is_empty() {
            // Saved before checkpoints counted their parts, when uploads were created without
            // a checksum algorithm: S3 refuses to complete such an upload with the CRC-32 its
            // new parts carry ("CompletedPart"), so the archive is written anew.
            discard(run.objects.as_ref(), run.target, saved).await;
            return Err(PortError::NotFound(format!(
                "upload {} of an older checkpoint",
                checkpoint.upload_id
            )));
        }
        let parts = run
            .objects
            .list_parts(run.target, &checkpoint.upload_id, checkpoint.part_count)
            .await?;
        let whole = parts.len() as u64 * checkpoint.part_size;
        if whole + tail.len() as u64 != checkpoint.written {
            return Err(PortError::Rejected(
                "packaging checkpoint does not add up; packaging from the start".into(),
            ));
        }
        let directory = decode_directory(run, &checkpoint)?;
        tracing::info!(
            seq = saved.seq,
            next_entry = checkpoint.next_entry,
            written = checkpoint.written,
            "packaging resumes from its checkpoint"
        );
        Ok(Writer {
            seq: saved.seq,
            next_entry: checkpoint.next_entry,
            directory,
            sink: PartSink::new(
                run,
                checkpoint.upload_id,
                checkpoint.part_size as usize,
                parts,
                checkpoint.written,
                tail,
            ),
            tail: checkpoint.tail,
            owns_upload: false,
            deflaters: Deflaters::new(run.settings.threads),
        })
    }

    async fn run(mut self, run: &Packaging<'_>, progress: &dyn Progress) -> PortResult<Packed> {
        let packed = self.write_all(run, progress).await;
        if matches!(packed, Ok(Packed::Superseded) | Err(_)) && self.owns_upload {
            self.sink.settle().await.ok();
            if let Err(e) = run
                .objects
                .abort_multipart(run.target, &self.sink.upload_id)
                .await
            {
                tracing::warn!(error = %e, "could not abort an upload no checkpoint names");
            }
        }
        packed
    }

    async fn write_all(
        &mut self,
        run: &Packaging<'_>,
        progress: &dyn Progress,
    ) -> PortResult<Packed> {
        let started = Instant::now();
        let mut read = 0u64;
        let mut last_save = Instant::now();
        let first = self.next_entry;
        let mut beat = Heartbeat::new(run.settings.heartbeat_every);
        while self.next_entry < run.manifest.entries.len() {
            let size = entry_size(run.manifest, self.next_entry);
            if self.next_entry > first {
                if let Some(deadline) = run.deadline {
                    // Stop at an entry boundary while the rest of the time still covers the
                    // next entry at this run's pace, and the margin.
                    let rate = read as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let next = Duration::from_secs_f64(size as f64 / rate.max(1.0));
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left < run.settings.margin + next {
                        return self.pause(run, progress).await;
                    }
                }
                if last_save.elapsed() >= run.settings.checkpoint_every {
                    if !self.save(run, progress).await? {
                        return Ok(Packed::Superseded);
                    }
                    last_save = Instant::now();
                    beat.reset();
                }
            }
            if !self.write_entry(run, progress, &mut beat).await? {
                return Ok(Packed::Superseded);
            }
            read += size;
        }
        self.finish(run).await
    }

    /// Writes entry `next_entry` whole; false if a heartbeat found the job moved on.
    async fn write_entry(
        &mut self,
        run: &Packaging<'_>,
        progress: &dyn Progress,
        beat: &mut Heartbeat,
    ) -> PortResult<bool> {
        let index = self.next_entry;
        let entry = &run.manifest.entries[index];
        let part = ObjectRef::parse_s3_url(&entry.url).ok_or_else(|| {
            PortError::Rejected(format!("manifest entry {} is not an s3:// URL", entry.url))
        })?;
        let size = entry_size(run.manifest, index);
        let name = entry_name(run.dataset, index, run.extension);
        let offset = self.sink.written;
        let zip = zip_layout(run);
        let mut coder = match run.kind {
            Archive::Zip => {
                self.sink
                    .write(zip.local_header(&name, size).into())
                    .await?;
                EntryCoder::new(zip.coding, &self.deflaters)
            }
            _ => {
                self.sink
                    .write(Bytes::from_static(&format::GZIP_HEADER))
                    .await?;
                let mut coder = EntryCoder::new(Coding::Deflate, &self.deflaters);
                let header = format::tar_header(&name, size, run.mtime).map_err(reject)?;
                self.sink.write_all(coder.write(&header).await?).await?;
                coder
            }
        };
        let mut data = 0u64;
        let mut stream = run.objects.get(&part).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            data += chunk.len() as u64;
            if data > size {
                return Err(reject("a part is longer than its manifest entry says"));
            }
            self.sink.write_all(coder.write(&chunk).await?).await?;
            if beat.due() {
                if !progress.heartbeat().await? {
                    return Ok(false);
                }
                beat.reset();
            }
        }
        if data != size {
            return Err(reject("a part is shorter than its manifest entry says"));
        }
        match run.kind {
            Archive::Zip => {
                let (rest, coded) = coder.finish().await?;
                self.sink.write_all(rest).await?;
                let entry = DirectoryEntry {
                    crc: coded.crc,
                    compressed: coded.compressed,
                    size: coded.size,
                    offset,
                };
                self.sink
                    .write(zip.data_descriptor(&entry).map_err(reject)?.into())
                    .await?;
                self.directory.push(entry);
            }
            _ => {
                self.sink
                    .write_all(coder.write(&format::tar_padding(size)).await?)
                    .await?;
                let (rest, coded) = coder.finish().await?;
                self.sink.write_all(rest).await?;
                self.sink.write(gzip_trailer(coded)).await?;
            }
        }
        self.next_entry += 1;
        Ok(true)
    }

    /// Writes the archive's end and completes the upload.
    async fn finish(&mut self, run: &Packaging<'_>) -> PortResult<Packed> {
        match run.kind {
            Archive::Zip => {
                let offset = self.sink.written;
                let directory = zip_layout(run).central_directory(
                    &self.directory,
                    |i| entry_name(run.dataset, i, run.extension),
                    offset,
                );
                self.sink.write(directory.into()).await?;
            }
            _ => {
                self.sink
                    .write(Bytes::from_static(&format::GZIP_HEADER))
                    .await?;
                let mut coder = EntryCoder::new(Coding::Deflate, &self.deflaters);
                self.sink
                    .write_all(coder.write(&format::TAR_END).await?)
                    .await?;
                let (rest, coded) = coder.finish().await?;
                self.sink.write_all(rest).await?;
                self.sink.write(gzip_trailer(coded)).await?;
            }
        }
        let bytes = self.sink.complete().await?;
        if let Some(tail) = self.tail.take() {
            remove_staged(run, &tail).await;
        }
        Ok(Packed::Done(Packaged {
            rows: run.manifest.data_rows(run.header_lines),
            bytes,
            files: run.manifest.entries.len(),
        }))
    }

    async fn pause(&mut self, run: &Packaging<'_>, progress: &dyn Progress) -> PortResult<Packed> {
        let saving = Instant::now();
        if self.save(run, progress).await? {
            tracing::info!(
                seq = self.seq,
                next_entry = self.next_entry,
                written = self.sink.written,
                // What stopping cost: the part in flight, the tail staged, the checkpoint.
                checkpoint_ms = saving.elapsed().as_millis() as u64,
                "packaging paused before the deadline"
            );
            Ok(Packed::Paused { seq: self.seq })
        } else {
            Ok(Packed::Superseded)
        }
    }

    /// Saves a checkpoint at this entry boundary: the parts in flight finished, the bytes past
    /// the last whole part staged. False if another packager saved first.
    async fn save(&mut self, run: &Packaging<'_>, progress: &dyn Progress) -> PortResult<bool> {
        self.sink.settle().await?;
        let next_seq = self.seq + 1;
        let tail = if self.sink.buffer.is_empty() {
            None
        } else {
            // A name of its own per save and packager, so no racing packager overwrites it.
            let object = ObjectRef::new(
                &run.staging.bucket,
                format!(
                    "{}{next_seq}-{}.tail",
                    run.staging.key,
                    uuid::Uuid::new_v4().simple()
                ),
            );
            let body = Bytes::copy_from_slice(&self.sink.buffer);
            run.objects
                .put(&object, body, "application/octet-stream")
                .await?;
            Some(object)
        };
        let checkpoint = Checkpoint {
            upload_id: self.sink.upload_id.clone(),
            part_size: self.sink.part_size as u64,
            part_count: self.sink.parts.len() as u32,
            parts: Vec::new(),
            next_entry: self.next_entry,
            written: self.sink.written,
            tail: tail.clone(),
            directory: encode_directory(&self.directory),
        };
        let saved = SavedCheckpoint {
            seq: next_seq,
            body: serde_json::to_string(&checkpoint).expect("plain struct serialises"),
        };
        if !progress.save(self.seq, &saved).await? {
            if let Some(tail) = &tail {
                remove_staged(run, tail).await;
            }
            return Ok(false);
        }
        if let Some(previous) = std::mem::replace(&mut self.tail, tail) {
            remove_staged(run, &previous).await;
        }
        self.seq = next_seq;
        self.owns_upload = false;
        Ok(true)
    }
}

/// Removes a staged tail no checkpoint needs any more; one left behind expires with the
/// bucket's lifecycle rule.
async fn remove_staged(run: &Packaging<'_>, tail: &ObjectRef) {
    if let Err(e) = run.objects.delete(tail).await {
        tracing::warn!(error = %e, tail = %tail.s3_url(), "could not remove a staged tail");
    }
}

/// A heartbeat due every `every`.
struct Heartbeat {
    every: Duration,
    last: Instant,
}

impl Heartbeat {
    fn new(every: Duration) -> Heartbeat {
        Heartbeat {
            every,
            last: Instant::now(),
        }
    }
    fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }
    fn reset(&mut self) {
        self.last = Instant::now();
    }
}

pub(super) fn zip_layout(run: &Packaging<'_>) -> ZipLayout {
    let mut layout = ZipLayout::new(run.mtime, coding_for(run.extension));
    if let Some(size) = run.settings.zip64_entry_size {
        layout.zip64_entry_size = size;
    }
    layout
}

/// Parts that are compressed already are stored as they are.
pub fn coding_for(extension: &str) -> Coding {
    if extension.ends_with(".gz") || extension.ends_with(".zst") || extension == "parquet" {
        Coding::Stored
    } else {
        Coding::Deflate
    }
}

pub(super) fn entry_size(manifest: &Manifest, index: usize) -> u64 {
    manifest.entries[index]
        .meta
        .as_ref()
        .map_or(0, |m| m.content_length)
}

/// A part size for this archive: at least the configured one, and large enough that the
/// archive (at most its parts' size, plus headers) fits in [`MAX_PARTS`] parts.
fn part_size(run: &Packaging<'_>) -> usize {
    const MIB: u64 = 1024 * 1024;
    let entries = run.manifest.entries.len() as u64;
    let estimate: u64 = (0..run.manifest.entries.len())
        .map(|i| entry_size(run.manifest, i))
        .sum::<u64>()
        + entries * 1024
        + MIB;
    let needed = estimate.div_ceil(MAX_PARTS);
    if needed <= run.settings.part_size as u64 {
        run.settings.part_size
    } else {
        (needed.div_ceil(MIB) * MIB) as usize
    }
}

fn gzip_trailer(coded: Coded) -> Bytes {
    Bytes::copy_from_slice(&format::gzip_trailer(coded.crc, coded.size))
}

pub(super) fn reject(message: impl Into<String>) -> PortError {
    PortError::Rejected(format!("packaging failed: {}", message.into()))
}
