//! The object store as a directory tree (`<root>/<bucket>/<key>`), with expiring download
//! links signed by HMAC-SHA256 and served by the local gateway.

use async_trait::async_trait;
use bytes::Bytes;
use export_core::domain::ObjectRef;
use export_core::ports::{
    multipart, ByteStream, ObjectStore, PortError, PortResult, PresignedUrl, UploadedPart,
};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type HmacSha256 = Hmac<Sha256>;

/// Read objects in chunks of this size.
const CHUNK: usize = 256 * 1024;

/// What a link's path leaves as it is: RFC 3986's unreserved characters, and `/` between a
/// key's segments.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// The same for one query value, where `/` is encoded too.
const QUERY_VALUE: &AsciiSet = &PATH.add(b'/');

#[derive(Clone)]
pub struct FsObjectStore {
    root: PathBuf,
    key: Arc<[u8]>,
    /// The gateway's address, known only once it has bound its port.
    base_url: Arc<RwLock<String>>,
}

/// Why a presented link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature does not match")]
    BadSignature,
}

/// A 256-bit key kept in `file`, made from the operating system's generator the first time
/// (and whenever the file holds less): links and webhook signatures then survive a restart.
pub fn stored_key(file: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(file) {
        Ok(key) if key.len() >= 32 => Ok(key),
        _ => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| anyhow::anyhow!("no randomness for {}: {e}", file.display()))?;
            std::fs::write(file, &key)?;
            Ok(key)
        }
    }
}

impl FsObjectStore {
    /// Opens (creating) the tree at `root`; the signing key lives in `key_file` so links
    /// survive a restart, and is created at random the first time.
    pub fn open(root: &Path, key_file: &Path) -> anyhow::Result<FsObjectStore> {
        std::fs::create_dir_all(root.join(".uploads"))?;
        std::fs::create_dir_all(root.join(".multipart"))?;
        let key = stored_key(key_file)?;
        Ok(FsObjectStore {
            root: root.to_owned(),
            key: key.into(),
            base_url: Arc::new(RwLock::new("http://127.0.0.1".into())),
        })
    }

    pub fn set_base_url(&self, url: &str) {
        *self.base_url.write().expect("base url lock") = url.trim_end_matches('/').to_owned();
    }

    /// The file behind an object. Refuses keys that would leave the bucket's directory.
    pub fn path_of(&self, object: &ObjectRef) -> PortResult<PathBuf> {
        let safe = |s: &str| {
            !s.is_empty()
                && Path::new(s)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        };
        if !safe(&object.bucket)
            || object.bucket.contains('/')
            || !safe(&object.key)
            || object.bucket.starts_with('.')
        {
            return Err(PortError::Rejected(format!(
                "invalid object name {}",
                object.s3_url()
            )));
        }
        Ok(self.root.join(&object.bucket).join(&object.key))
    }

    /// The MAC over what a link grants: this object, until `expires`, under this name.
    fn mac(&self, object: &ObjectRef, expires: i64, file_name: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(
            format!(
                "GET\n{}\n{}\n{expires}\n{file_name}",
                object.bucket, object.key
            )
            .as_bytes(),
        );
        mac
    }

    fn signature(&self, object: &ObjectRef, expires: i64, file_name: &str) -> String {
        hex::encode(self.mac(object, expires, file_name).finalize().into_bytes())
    }

    /// Checks a link's signature and expiry (seconds since the epoch).
    pub fn verify_link(
        &self,
        object: &ObjectRef,
        expires: i64,
        file_name: &str,
        signature: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        // Compared in constant time by the MAC itself.
        let presented = hex::decode(signature).map_err(|_| LinkError::BadSignature)?;
        self.mac(object, expires, file_name)
            .verify_slice(&presented)
            .map_err(|_| LinkError::BadSignature)?;
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

impl FsObjectStore {
    /// A multipart upload's directory: `<root>/.multipart/<id>/`, holding `object` (what it
    /// will become) and `part-NNNNN` files. Ids are the store's own UUIDs.
    fn upload_dir(&self, object: &ObjectRef, upload_id: &str) -> PortResult<PathBuf> {
        let gone = || PortError::NotFound(format!("upload {upload_id} of {}", object.s3_url()));
        if uuid::Uuid::parse_str(upload_id).is_err() {
            return Err(gone());
        }
        let dir = self.root.join(".multipart").join(upload_id);
        match std::fs::read_to_string(dir.join("object")) {
            Ok(named) if named == object.s3_url() => Ok(dir),
            _ => Err(gone()),
        }
    }
}

/// Writes `body` beside `path` and renames it there, so the file is there whole or not at all.
async fn write_whole(object: &ObjectRef, path: &Path, body: &[u8]) -> PortResult<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let staging = path.with_file_name(format!(".{name}-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&staging, body)
        .await
        .map_err(|e| io_error(object, e))?;
    tokio::fs::rename(&staging, path)
        .await
        .map_err(|e| io_error(object, e))
}

fn io_error(object: &ObjectRef, e: std::io::Error) -> PortError {
    if e.kind() == std::io::ErrorKind::NotFound {
        PortError::NotFound(object.s3_url())
    } else {
        PortError::Unavailable(format!("{}: {e}", object.s3_url()))
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream> {
        let path = self.path_of(object)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(object, e))?;
        let object = object.clone();
        let stream = futures::stream::try_unfold(file, move |mut file| {
            let object = object.clone();
            async move {
                let mut buf = vec![0u8; CHUNK];
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| io_error(&object, e))?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Bytes::from(buf), file)))
            }
        });
        Ok(Box::pin(stream))
    }

    /// Written aside and renamed, so readers see the old object or the new one, whole.
    async fn put(&self, object: &ObjectRef, body: Bytes, _content_type: &str) -> PortResult<()> {
        let target = self.path_of(object)?;
        let staging = self
            .root
            .join(".uploads")
            .join(uuid::Uuid::new_v4().to_string());
        tokio::fs::write(&staging, &body)
            .await
            .map_err(|e| io_error(object, e))?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(object, e))?;
        }
        tokio::fs::rename(&staging, &target)
            .await
            .map_err(|e| io_error(object, e))
    }

    async fn size_of(&self, object: &ObjectRef) -> PortResult<Option<u64>> {
        match tokio::fs::metadata(self.path_of(object)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(object, e)),
        }
    }

    /// Copied aside and renamed, as a put is. One machine has one owner: nothing to grant.
    async fn copy(&self, from: &ObjectRef, to: &ObjectRef) -> PortResult<()> {
        let source = self.path_of(from)?;
        let target = self.path_of(to)?;
        let staging = self
            .root
            .join(".uploads")
            .join(uuid::Uuid::new_v4().to_string());
        tokio::fs::copy(&source, &staging)
            .await
            .map_err(|e| io_error(from, e))?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(to, e))?;
        }
        tokio::fs::rename(&staging, &target)
            .await
            .map_err(|e| io_error(to, e))
    }

    async fn delete(&self, object: &ObjectRef) -> PortResult<()> {
        match tokio::fs::remove_file(self.path_of(object)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(object, e)),
            _ => Ok(()),
        }
    }

    async fn create_multipart(
        &self,
        object: &ObjectRef,
        _content_type: &str,
    ) -> PortResult<String> {
        self.path_of(object)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.root.join(".multipart").join(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error(object, e))?;
        tokio::fs::write(dir.join("object"), object.s3_url())
            .await
            .map_err(|e| io_error(object, e))?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> PortResult<UploadedPart> {
        multipart::check_number(number)?;
        let dir = self.upload_dir(object, upload_id)?;
        let (etag, body) = tokio::task::spawn_blocking(move || (multipart::etag(&body), body))
            .await
            .map_err(|e| PortError::Unavailable(format!("hashing a part: {e}")))?;
        let part = dir.join(format!("part-{number:05}"));
        write_whole(object, &part, &body).await?;
        // The ETag beside the part, so listing the parts reads no part's body again.
        write_whole(object, &part.with_extension("etag"), etag.as_bytes()).await?;
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
        let dir = self.upload_dir(object, upload_id)?;
        let target = self.path_of(object)?;
        let staging = self
            .root
            .join(".uploads")
            .join(uuid::Uuid::new_v4().to_string());
        let mut out = tokio::fs::File::create(&staging)
            .await
            .map_err(|e| io_error(object, e))?;
        for (i, part) in parts.iter().enumerate() {
            // The local stack refuses what S3 would.
            let body = tokio::fs::read(dir.join(format!("part-{:05}", part.number)))
                .await
                .ok();
            multipart::check_part(parts, i, body.as_deref(), multipart::MIN_PART_SIZE)?;
            let body = body.unwrap_or_default();
            out.write_all(&body)
                .await
                .map_err(|e| io_error(object, e))?;
        }
        out.flush().await.map_err(|e| io_error(object, e))?;
        drop(out);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(object, e))?;
        }
        tokio::fs::rename(&staging, &target)
            .await
            .map_err(|e| io_error(object, e))?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }

    async fn list_parts(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        count: u32,
    ) -> PortResult<Vec<UploadedPart>> {
        let dir = self.upload_dir(object, upload_id)?;
        let mut parts = Vec::with_capacity(count as usize);
        for number in 1..=count {
            let part = dir.join(format!("part-{number:05}"));
            let etag = match tokio::fs::read_to_string(part.with_extension("etag")).await {
                Ok(etag) => etag,
                // A part written by a run that stopped before its ETag: work it out again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match tokio::fs::read(&part).await {
                        Ok(body) => multipart::etag(&body),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(multipart::missing_part(number, count))
                        }
                        Err(e) => return Err(io_error(object, e)),
                    }
                }
                Err(e) => return Err(io_error(object, e)),
            };
            parts.push(UploadedPart {
                number,
                etag,
                checksum_crc32: None,
            });
        }
        Ok(parts)
    }

    async fn abort_multipart(&self, object: &ObjectRef, upload_id: &str) -> PortResult<()> {
        match self.upload_dir(object, upload_id) {
            Ok(dir) => tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| io_error(object, e)),
            Err(PortError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn presign_get(
        &self,
        object: &ObjectRef,
        expires_in: Duration,
        file_name: &str,
    ) -> PortResult<PresignedUrl> {
        self.path_of(object)?;
        let expires = chrono::Utc::now().timestamp() + expires_in.as_secs() as i64;
        let signature = self.signature(object, expires, file_name);
        let base = self.base_url.read().expect("base url lock").clone();
        Ok(PresignedUrl {
            url: format!(
                "{base}/objects/{}/{}?expires={expires}&filename={}&signature={signature}",
                utf8_percent_encode(&object.bucket, PATH),
                utf8_percent_encode(&object.key, PATH),
                utf8_percent_encode(file_name, QUERY_VALUE),
            ),
            // The store's key does not expire.
            signer_expires_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts are listed with the ETags they were uploaded with, as S3's `ListParts` lists
    /// them, a part uploaded past the count is left out, and a missing one is `NotFound`.
    #[tokio::test]
    async fn an_upload_s_parts_are_listed_as_they_were_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FsObjectStore::open(&dir.path().join("objects"), &dir.path().join("key")).unwrap();
        let object = ObjectRef::new("downloads", "archives/a.zip");
        let upload = store
            .create_multipart(&object, "application/zip")
            .await
            .unwrap();
        let mut uploaded = Vec::new();
        for number in 1..=3u32 {
            let body = Bytes::from(vec![number as u8; 1000]);
            uploaded.push(
                store
                    .upload_part(&object, &upload, number, body)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(
            store.list_parts(&object, &upload, 2).await.unwrap(),
            uploaded[..2]
        );
        // A part whose ETag was never written beside it (a run that stopped between the two)
        // is listed with the ETag of its bytes.
        let part = dir
            .path()
            .join("objects/.multipart")
            .join(&upload)
            .join("part-00003.etag");
        std::fs::remove_file(part).unwrap();
        assert_eq!(
            store.list_parts(&object, &upload, 3).await.unwrap(),
            uploaded
        );
        let missing = store.list_parts(&object, &upload, 4).await;
        assert!(
            matches!(missing, Err(PortError::NotFound(_))),
            "{missing:?}"
        );
        store.abort_multipart(&object, &upload).await.unwrap();
        let gone = store.list_parts(&object, &upload, 1).await;
        assert!(matches!(gone, Err(PortError::NotFound(_))), "{gone:?}");
    }

    #[tokio::test]
    async fn the_directory_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FsObjectStore::open(&dir.path().join("objects"), &dir.path().join("key")).unwrap();
        export_core::testing::object_conformance::check_object_store(&store, "downloads").await;
    }

    #[tokio::test]
    async fn writes_reads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            FsObjectStore::open(&dir.path().join("objects"), &dir.path().join("key")).unwrap();
        let object = ObjectRef::new("downloads", "a/b c.zip");
        store
            .put(&object, Bytes::from_static(b"hello"), "application/zip")
            .await
            .unwrap();
        let bytes = export_core::archive::read_object(&store, &object)
            .await
            .unwrap();
        assert_eq!(bytes, b"hello");
        let url = store
            .presign_get(&object, Duration::from_secs(60), "b c.zip")
            .await
            .unwrap()
            .url;
        assert!(
            url.contains("/objects/downloads/a/b%20c.zip?expires="),
            "{url}"
        );
        assert!(url.contains("&filename=b%20c.zip&"), "{url}");
        let nested = store
            .presign_get(&object, Duration::from_secs(60), "dir/ü.zip")
            .await
            .unwrap()
            .url;
        assert!(nested.contains("&filename=dir%2F%C3%BC.zip&"), "{nested}");
        let expires = chrono::Utc::now().timestamp() + 60;
        let good = store.signature(&object, expires, "b c.zip");
        assert_eq!(
            store.verify_link(&object, expires, "b c.zip", &good, expires - 1),
            Ok(())
        );
        assert_eq!(
            store.verify_link(&object, expires, "b c.zip", &good, expires + 1),
            Err(LinkError::Expired)
        );
        assert_eq!(
            store.verify_link(&object, expires + 1, "b c.zip", &good, 0),
            Err(LinkError::BadSignature)
        );
        for forged in [
            "",
            "zz",
            &good[..10],
            &good.to_uppercase()[..good.len() - 1],
        ] {
            assert_eq!(
                store.verify_link(&object, expires, "b c.zip", forged, 0),
                Err(LinkError::BadSignature),
                "{forged}"
            );
        }
        // The key is 32 random bytes, kept for the next start.
        let key = std::fs::read(dir.path().join("key")).unwrap();
        assert_eq!(key.len(), 32);
        let again =
            FsObjectStore::open(&dir.path().join("objects"), &dir.path().join("key")).unwrap();
        assert_eq!(again.signature(&object, expires, "b c.zip"), good);
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(
                store.path_of(&ObjectRef::new("downloads", bad)).is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            store.get(&ObjectRef::new("downloads", "missing")).await,
            Err(PortError::NotFound(_))
        ));
    }
}
