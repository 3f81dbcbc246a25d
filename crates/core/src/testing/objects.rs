use super::Faults;
use crate::domain::ObjectRef;
use crate::ports::{
    multipart, ByteStream, ObjectStore, PortError, PortResult, PresignedUrl, UploadedPart,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Objects in memory. An upload's object appears whole when it completes, as on S3; links are
/// `memory://bucket/key?…` and carry what they were signed for.
pub struct MemoryObjectStore {
    objects: Arc<Mutex<HashMap<(String, String), Bytes>>>,
    hold: Mutex<Option<Arc<Semaphore>>>,
    signer_expires_at: Mutex<Option<crate::domain::Millis>>,
    uploads: Mutex<HashMap<String, MultipartUpload>>,
    gets: std::sync::atomic::AtomicUsize,
    /// The smallest part a multipart upload may have but for its last: S3's 5 MiB unless a
    /// test lowers it to work on small data.
    pub min_part_size: Mutex<usize>,
    pub faults: Faults,
}

/// A multipart upload in progress: its object and its parts so far.
struct MultipartUpload {
    object: ObjectRef,
    parts: BTreeMap<u32, Bytes>,
}

impl Default for MemoryObjectStore {
    fn default() -> Self {
        MemoryObjectStore {
            objects: Arc::default(),
            hold: Mutex::default(),
            signer_expires_at: Mutex::default(),
            uploads: Mutex::default(),
            gets: Default::default(),
            min_part_size: Mutex::new(multipart::MIN_PART_SIZE),
            faults: Faults::default(),
        }
    }
}

/// Holds the next `get` until [`ReadHold::release`]: a packager stopped mid-archive.
pub struct ReadHold(Arc<Semaphore>);

impl ReadHold {
    pub fn release(&self) {
        self.0.add_permits(1);
    }
}

fn key(object: &ObjectRef) -> (String, String) {
    (object.bucket.clone(), object.key.clone())
}

impl MemoryObjectStore {
    pub fn insert(&self, object: &ObjectRef, body: impl Into<Bytes>) {
        self.lock().insert(key(object), body.into());
    }

    pub fn read(&self, object: &ObjectRef) -> Option<Bytes> {
        self.lock().get(&key(object)).cloned()
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .lock()
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Signs from now on as credentials expiring at `at` would.
    pub fn sign_with_credentials_expiring_at(&self, at: crate::domain::Millis) {
        *self.signer_expires_at.lock().expect("signer lock") = Some(at);
    }

    /// The next `get` waits until the returned hold is released.
    pub fn hold_next_get(&self) -> ReadHold {
        let gate = Arc::new(Semaphore::new(0));
        *self.hold.lock().expect("hold lock") = Some(gate.clone());
        ReadHold(gate)
    }

    /// How many GETs were asked for so far.
    pub fn gets(&self) -> usize {
        self.gets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().expect("uploads lock").len()
    }

    /// Drops part `number` of upload `upload_id`, as if it had never been uploaded.
    pub fn forget_part(&self, upload_id: &str, number: u32) {
        if let Some(upload) = self
            .uploads
            .lock()
            .expect("uploads lock")
            .get_mut(upload_id)
        {
            upload.parts.remove(&number);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Bytes>> {
        self.objects.lock().expect("objects lock")
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gate = self.hold.lock().expect("hold lock").take();
        if let Some(gate) = gate {
            let _ = gate.acquire().await;
        }
        super::interleave().await;
        self.faults.check("get")?;
        let body = self
            .read(object)
            .ok_or_else(|| PortError::NotFound(object.s3_url()))?;
        // Two chunks, so a reader sees a stream rather than one piece.
        let middle = body.len() / 2;
        let chunks = vec![Ok(body.slice(..middle)), Ok(body.slice(middle..))];
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn put(&self, object: &ObjectRef, body: Bytes, _content_type: &str) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("put")?;
        self.insert(object, body);
        Ok(())
    }

    async fn size_of(&self, object: &ObjectRef) -> PortResult<Option<u64>> {
        super::interleave().await;
        self.faults.check("size_of")?;
        Ok(self.read(object).map(|b| b.len() as u64))
    }

    async fn copy(&self, from: &ObjectRef, to: &ObjectRef) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("copy")?;
        let body = self
            .read(from)
            .ok_or_else(|| PortError::NotFound(from.s3_url()))?;
        self.insert(to, body);
        Ok(())
    }

    async fn delete(&self, object: &ObjectRef) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("delete")?;
        self.lock().remove(&key(object));
        Ok(())
    }

    async fn create_multipart(
        &self,
        object: &ObjectRef,
        _content_type: &str,
    ) -> PortResult<String> {
        super::interleave().await;
        self.faults.check("create_multipart")?;
        let id = uuid::Uuid::new_v4().to_string();
        self.uploads.lock().expect("uploads lock").insert(
            id.clone(),
            MultipartUpload {
                object: object.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> PortResult<UploadedPart> {
        super::interleave().await;
        self.faults.check("upload_part")?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let upload = uploads
            .get_mut(upload_id)
            .filter(|u| u.object == *object)
            .ok_or_else(|| PortError::NotFound(format!("upload {upload_id}")))?;
        multipart::check_number(number)?;
        let etag = multipart::etag(&body);
        upload.parts.insert(number, body);
        Ok(UploadedPart {
            number,
            etag,
            checksum_crc32: None,
        })
    }

    async fn complete_multipart(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("complete_multipart")?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let upload = uploads
            .get(upload_id)
            .filter(|u| u.object == *object)
            .ok_or_else(|| PortError::NotFound(format!("upload {upload_id}")))?;
        let min = *self.min_part_size.lock().expect("part size lock");
        let mut body = BytesMut::new();
        for (i, part) in parts.iter().enumerate() {
            let stored = upload.parts.get(&part.number).map(|b| &b[..]);
            multipart::check_part(parts, i, stored, min)?;
            body.extend_from_slice(stored.unwrap_or_default());
        }
        uploads.remove(upload_id);
        drop(uploads);
        self.insert(object, body.freeze());
        Ok(())
    }

    async fn abort_multipart(&self, _object: &ObjectRef, upload_id: &str) -> PortResult<()> {
        super::interleave().await;
        self.faults.check("abort_multipart")?;
        self.uploads.lock().expect("uploads lock").remove(upload_id);
        Ok(())
    }

    async fn list_parts(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        count: u32,
    ) -> PortResult<Vec<UploadedPart>> {
        super::interleave().await;
        self.faults.check("list_parts")?;
        let uploads = self.uploads.lock().expect("uploads lock");
        let upload = uploads
            .get(upload_id)
            .filter(|u| u.object == *object)
            .ok_or_else(|| PortError::NotFound(format!("upload {upload_id}")))?;
        (1..=count)
            .map(|number| {
                let body = upload
                    .parts
                    .get(&number)
                    .ok_or_else(|| multipart::missing_part(number, count))?;
                Ok(UploadedPart {
                    number,
                    etag: multipart::etag(body),
                    checksum_crc32: None,
                })
            })
            .collect()
    }

    async fn presign_get(
        &self,
        object: &ObjectRef,
        expires_in: Duration,
        file_name: &str,
    ) -> PortResult<PresignedUrl> {
        super::interleave().await;
        self.faults.check("presign_get")?;
        Ok(PresignedUrl {
            url: format!(
                "memory://{}/{}?expires_in={}&file_name={file_name}",
                object.bucket,
                object.key,
                expires_in.as_secs()
            ),
            signer_expires_at: *self.signer_expires_at.lock().expect("signer lock"),
        })
    }
}
