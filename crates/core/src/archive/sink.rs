//! The archive's multipart upload as the packager writes it: whole parts sent one at a time
//! while the next fills, so memory holds about two parts.

use super::package::Packaging;
use crate::domain::ObjectRef;
use crate::ports::{ObjectStore, PortError, PortResult, UploadedPart};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The archive's upload, in parts of `part_size`: a full part is sent while the next fills,
/// one in flight at a time, so memory holds about two parts whatever the archive's size.
pub(super) struct PartSink {
    pub(super) objects: Arc<dyn ObjectStore>,
    pub(super) target: ObjectRef,
    pub(super) upload_id: String,
    pub(super) part_size: usize,
    pub(super) parts: Vec<UploadedPart>,
    pub(super) buffer: BytesMut,
    pub(super) sending: Option<JoinHandle<PortResult<UploadedPart>>>,
    pub(super) written: u64,
}

impl PartSink {
    pub(super) fn new(
        run: &Packaging<'_>,
        upload_id: String,
        part_size: usize,
        parts: Vec<UploadedPart>,
        written: u64,
        buffer: BytesMut,
    ) -> PartSink {
        PartSink {
            objects: run.objects.clone(),
            target: run.target.clone(),
            upload_id,
            part_size,
            parts,
            buffer,
            sending: None,
            written,
        }
    }

    pub(super) async fn write_all(&mut self, chunks: Vec<Bytes>) -> PortResult<()> {
        for chunk in chunks {
            self.write(chunk).await?;
        }
        Ok(())
    }

    pub(super) async fn write(&mut self, chunk: Bytes) -> PortResult<()> {
        self.written += chunk.len() as u64;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            // Filled up to the part size exactly, then handed over whole: the buffer never
            // grows past one part, and each part is one allocation.
            let room = self.part_size - self.buffer.len();
            let take = room.min(rest.len());
            if self.buffer.capacity() < self.part_size {
                self.buffer.reserve(self.part_size - self.buffer.len());
            }
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == self.part_size {
                let part = std::mem::replace(&mut self.buffer, BytesMut::new()).freeze();
                self.send(part).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn send(&mut self, body: Bytes) -> PortResult<()> {
        self.settle().await?;
        let number = self.parts.len() as u32 + 1;
        let objects = self.objects.clone();
        let target = self.target.clone();
        let upload_id = self.upload_id.clone();
        self.sending = Some(tokio::spawn(async move {
            objects.upload_part(&target, &upload_id, number, body).await
        }));
        Ok(())
    }

    /// Waits for the part in flight.
    pub(super) async fn settle(&mut self) -> PortResult<()> {
        if let Some(sending) = self.sending.take() {
            let part = sending
                .await
                .map_err(|e| PortError::Unavailable(format!("uploading a part failed: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Sends the last part and completes the upload; returns the object's size.
    pub(super) async fn complete(&mut self) -> PortResult<u64> {
        if !self.buffer.is_empty() || self.parts.is_empty() && self.sending.is_none() {
            let last = self.buffer.split().freeze();
            self.send(last).await?;
        }
        self.settle().await?;
        self.objects
            .complete_multipart(&self.target, &self.upload_id, &self.parts)
            .await?;
        Ok(self.written)
    }
}
