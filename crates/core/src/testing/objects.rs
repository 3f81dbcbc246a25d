use super::Faults;
use crate::domain::ObjectRef;
use crate::ports::{ByteStream, ObjectStore, PortError, PortResult, PresignedUrl, Upload};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Objects in memory. An upload's object appears whole when it completes, as on S3; links are
/// `memory://bucket/key?…` and carry what they were signed for.
#[derive(Default)]
pub struct MemoryObjectStore {
    objects: Arc<Mutex<HashMap<(String, String), Bytes>>>,
    hold: Mutex<Option<Arc<Semaphore>>>,
    signer_expires_at: Mutex<Option<crate::domain::Millis>>,
    pub faults: Faults,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Bytes>> {
        self.objects.lock().expect("objects lock")
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream> {
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

    async fn start_upload(
        &self,
        object: &ObjectRef,
        _content_type: &str,
    ) -> PortResult<Box<dyn Upload>> {
        super::interleave().await;
        self.faults.check("start_upload")?;
        Ok(Box::new(MemoryUpload {
            objects: self.objects.clone(),
            object: object.clone(),
            body: BytesMut::new(),
        }))
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

struct MemoryUpload {
    objects: Arc<Mutex<HashMap<(String, String), Bytes>>>,
    object: ObjectRef,
    body: BytesMut,
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, chunk: Bytes) -> PortResult<()> {
        self.body.extend_from_slice(&chunk);
        Ok(())
    }

    async fn complete(self: Box<Self>) -> PortResult<u64> {
        let size = self.body.len() as u64;
        self.objects
            .lock()
            .expect("objects lock")
            .insert(key(&self.object), self.body.freeze());
        Ok(size)
    }

    async fn abort(self: Box<Self>) -> PortResult<()> {
        Ok(())
    }
}
