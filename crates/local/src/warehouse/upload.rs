//! A part file written as its rows stream in, through any object store's multipart calls:
//! nothing is sent until a whole part is buffered, so memory stays bounded whatever the file's
//! size, and a file that never fills one part is written with a single PUT, as UNLOAD's small
//! files are.

use bytes::{Bytes, BytesMut};
use export_core::domain::ObjectRef;
use export_core::ports::{ObjectStore, PortResult, UploadedPart};

/// Parts are 8 MiB, above S3's 5 MiB minimum; past every 1,000 parts the size doubles, so
/// S3's 10,000-part cap is never met (8 MiB × 1,000 + 16 MiB × 1,000 + … covers UNLOAD's
/// largest file, 6.2 GB, long before).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

pub struct PartUpload<'a> {
    objects: &'a dyn ObjectStore,
    object: ObjectRef,
    content_type: String,
    upload_id: Option<String>,
    buffer: BytesMut,
    parts: Vec<UploadedPart>,
    size: u64,
}

impl<'a> PartUpload<'a> {
    pub fn new(objects: &'a dyn ObjectStore, object: ObjectRef, content_type: &str) -> Self {
        PartUpload {
            objects,
            object,
            content_type: content_type.to_owned(),
            upload_id: None,
            buffer: BytesMut::new(),
            parts: Vec::new(),
            size: 0,
        }
    }

    fn part_size(&self) -> usize {
        PART_SIZE << (self.parts.len() / 1000).min(4)
    }

    pub async fn write(&mut self, chunk: Bytes) -> PortResult<()> {
        self.size += chunk.len() as u64;
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= self.part_size() {
            let part = self.buffer.split_to(self.part_size()).freeze();
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, body: Bytes) -> PortResult<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .objects
                    .create_multipart(&self.object, &self.content_type)
                    .await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as u32 + 1;
        let part = self
            .objects
            .upload_part(&self.object, &upload_id, number, body)
            .await?;
        self.parts.push(part);
        Ok(())
    }

    /// Finishes the object and returns its size in bytes.
    pub async fn complete(mut self) -> PortResult<u64> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        let Some(upload_id) = self.upload_id.clone() else {
            self.objects
                .put(&self.object, rest, &self.content_type)
                .await?;
            return Ok(self.size);
        };
        if !rest.is_empty() {
            self.send(rest).await?;
        }
        self.objects
            .complete_multipart(&self.object, &upload_id, &self.parts)
            .await?;
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use export_core::testing::MemoryObjectStore;

    #[tokio::test]
    async fn a_large_file_goes_in_parts_and_a_small_one_in_one_put() {
        let objects = MemoryObjectStore::default();
        let big = ObjectRef::new("results", "exports/r1/0000_part_00");
        let mut upload = PartUpload::new(&objects, big.clone(), "application/octet-stream");
        let mut expected = Vec::new();
        for i in 0..20u8 {
            let chunk = vec![i; 1024 * 1024];
            expected.extend_from_slice(&chunk);
            upload.write(Bytes::from(chunk)).await.unwrap();
        }
        assert_eq!(
            upload.parts.len(),
            2,
            "two whole parts sent, the rest buffered"
        );
        assert_eq!(upload.complete().await.unwrap(), 20 * 1024 * 1024);
        assert!(objects.read(&big).unwrap().to_vec() == expected);
        assert_eq!(objects.open_uploads(), 0);

        let small = ObjectRef::new("results", "exports/r1/0001_part_00");
        let mut upload = PartUpload::new(&objects, small.clone(), "text/plain");
        upload.write(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(upload.complete().await.unwrap(), 5);
        assert_eq!(&objects.read(&small).unwrap()[..], b"hello");
    }
}
