//! The object store on S3: UNLOAD's parts are read from the results bucket, archives are
//! written to the downloads bucket by multipart upload, its parts carrying CRC-32 checksums,
//! and handed out as SigV4 presigned GETs.

use crate::error::port_error;
use async_trait::async_trait;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectCannedAcl,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use export_core::domain::{Millis, ObjectRef};
use export_core::ports::{
    ByteStream, ObjectStore, PortError, PortResult, PresignedUrl, UploadedPart,
};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// S3 SigV4 presigned URLs live at most seven days.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The checksum every multipart upload is created with. The SDK sends a CRC-32 with each
/// `UploadPart` by default, and S3 ties a part's checksum to the algorithm its upload was
/// created with ("CompletedPart": a part's `ChecksumCRC32` "is present if the multipart upload
/// request was created with the CRC32 checksum algorithm"; "Checking object integrity", Amazon
/// S3 User Guide): an upload created without one refuses the parts' checksums on completion
/// (`InvalidPart`), and one created with it requires them. So the upload declares CRC-32, each
/// part is sent with it, and completing names each part's.
const CHECKSUM: ChecksumAlgorithm = ChecksumAlgorithm::Crc32;

/// The largest object one `CopyObject` copies; larger ones are copied part by part with
/// `UploadPartCopy` ("Copying an object using multipart upload", Amazon S3 User Guide: objects
/// greater than 5 GB must be).
pub const SINGLE_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// The size of each part of a multipart copy: within S3's 5 MiB to 5 GiB a part, and with
/// its 10,000 parts at most reaching about 4.9 TiB, all an UNLOAD's single archive could be
/// ("Amazon S3 multipart upload limits", Amazon S3 User Guide).
pub const COPY_PART_SIZE: u64 = 512 * 1024 * 1024;

#[derive(Clone)]
pub struct S3ObjectStore {
    client: Client,
    links: LinkSigner,
    /// Objects larger than this are copied part by part ([`SINGLE_COPY_LIMIT`]; tests set a
    /// smaller one to exercise the parts on small objects).
    single_copy_limit: u64,
    copy_part_size: u64,
}

/// What presigns the download links: a client, and the expiry of the credentials it last
/// signed with, so that a link's true expiry can be told.
#[derive(Clone, Debug)]
pub struct LinkSigner {
    client: Client,
    /// `None` until it signs, or when its credentials do not expire.
    signed_until: Arc<Mutex<Option<SystemTime>>>,
}

/// Hands out `inner`'s credentials and notes when they expire. The SDK's identity cache asks
/// for credentials only when it needs new ones, so the last ones handed out are the ones it
/// signs with: their expiry is known without resolving credentials again per link.
#[derive(Debug)]
struct ExpiryNoted {
    inner: SharedCredentialsProvider,
    signed_until: Arc<Mutex<Option<SystemTime>>>,
}

impl ProvideCredentials for ExpiryNoted {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let credentials = self.inner.provide_credentials().await?;
            *self.signed_until.lock().expect("expiry lock") = credentials.expiry();
            Ok(credentials)
        })
    }
}

impl S3ObjectStore {
    /// Links signed by `client` itself, their signer's expiry unknown.
    pub fn new(client: Client) -> Self {
        let links = LinkSigner {
            client: client.clone(),
            signed_until: Arc::default(),
        };
        S3ObjectStore {
            client,
            links,
            single_copy_limit: SINGLE_COPY_LIMIT,
            copy_part_size: COPY_PART_SIZE,
        }
    }

    /// Copies objects above `limit` bytes in parts of `part_size` (tests only).
    pub fn with_copy_parts(self, limit: u64, part_size: u64) -> Self {
        S3ObjectStore {
            single_copy_limit: limit,
            copy_part_size: part_size,
            ..self
        }
    }

    /// `UploadPartCopy` of `from` in ranges, into an upload owned by `to`'s bucket owner.
    async fn copy_in_parts(&self, from: &ObjectRef, to: &ObjectRef, size: u64) -> PortResult<()> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&to.bucket)
            .key(&to.key)
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .send()
            .await
            .map_err(|e| port_error("CreateMultipartUpload", e))?;
        let upload_id = upload.upload_id.unwrap_or_default();
        let mut parts = Vec::new();
        let mut start = 0;
        let mut number = 1;
        let copied: PortResult<()> = async {
            while start < size {
                let end = (start + self.copy_part_size).min(size) - 1;
                let output = self
                    .client
                    .upload_part_copy()
                    .bucket(&to.bucket)
                    .key(&to.key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(copy_source(from))
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| port_error("UploadPartCopy", e))?;
                let etag = output
                    .copy_part_result
                    .and_then(|r| r.e_tag)
                    .unwrap_or_default();
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(etag)
                        .build(),
                );
                start = end + 1;
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&to.bucket)
                .key(&to.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| port_error("CompleteMultipartUpload", e))?;
            Ok(())
        }
        .await;
        if copied.is_err() {
            // Parts left behind cost storage until the bucket's lifecycle rule ends them.
            let _ = self.abort_multipart(to, &upload_id).await;
        }
        copied
    }

    pub fn with_link_signer(self, links: LinkSigner) -> Self {
        S3ObjectStore { links, ..self }
    }
}

impl LinkSigner {
    /// A client on `sdk` that signs with `credentials` (or `sdk`'s own) and notes their expiry.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        credentials: Option<SharedCredentialsProvider>,
        s3_path_style: bool,
    ) -> LinkSigner {
        let signed_until = Arc::<Mutex<Option<SystemTime>>>::default();
        let mut config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(s3_path_style);
        if let Some(inner) = credentials.or_else(|| sdk.credentials_provider()) {
            config = config.credentials_provider(ExpiryNoted {
                inner,
                signed_until: signed_until.clone(),
            });
        }
        LinkSigner {
            client: Client::from_conf(config.build()),
            signed_until,
        }
    }

    /// When the credentials it last signed with expire: temporary ones (a Lambda role's, an
    /// assumed role's) do, an IAM user's access key does not.
    fn expires_at(&self) -> Option<Millis> {
        let expiry = (*self.signed_until.lock().expect("expiry lock"))?;
        let since_epoch = expiry.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(since_epoch.as_millis() as Millis)
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn get(&self, object: &ObjectRef) -> PortResult<ByteStream> {
        let output = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    PortError::NotFound(object.s3_url())
                } else {
                    port_error("GetObject", e)
                }
            })?;
        let url = object.s3_url();
        let stream = futures::stream::unfold(Some(output.body), move |body| {
            let url = url.clone();
            async move {
                let mut body: SdkByteStream = body?;
                match body.next().await {
                    None => None,
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                    Some(Err(e)) => Some((
                        Err(PortError::Unavailable(format!("reading {url}: {e}"))),
                        None,
                    )),
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn put(&self, object: &ObjectRef, body: Bytes, content_type: &str) -> PortResult<()> {
        self.client
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .content_type(content_type)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| port_error("PutObject", e))?;
        Ok(())
    }

    async fn size_of(&self, object: &ObjectRef) -> PortResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(port_error("HeadObject", e)),
        }
    }

    async fn delete(&self, object: &ObjectRef) -> PortResult<()> {
        self.client
            .delete_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| port_error("DeleteObject", e))?;
        Ok(())
    }

    async fn create_multipart(&self, object: &ObjectRef, content_type: &str) -> PortResult<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .content_type(content_type)
            .checksum_algorithm(CHECKSUM)
            .send()
            .await
            .map_err(|e| port_error("CreateMultipartUpload", e))?;
        output.upload_id.ok_or_else(|| {
            PortError::Rejected("CreateMultipartUpload returned no upload id".into())
        })
    }

    async fn upload_part(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> PortResult<UploadedPart> {
        let output = self
            .client
            .upload_part()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .checksum_algorithm(CHECKSUM)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| upload_error("UploadPart", upload_id, e))?;
        Ok(UploadedPart {
            number,
            etag: output.e_tag.unwrap_or_default(),
            checksum_crc32: output.checksum_crc32,
        })
    }

    async fn complete_multipart(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> PortResult<()> {
        // Each part was sent with the upload's CRC-32; completing the upload repeats it.
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .set_checksum_crc32(p.checksum_crc32.clone())
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| upload_error("CompleteMultipartUpload", upload_id, e))?;
        Ok(())
    }

    async fn abort_multipart(&self, object: &ObjectRef, upload_id: &str) -> PortResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_upload()) => Ok(()),
            Err(e) => Err(port_error("AbortMultipartUpload", e)),
            Ok(_) => Ok(()),
        }
    }

    /// `ListParts`, a page of at most 1,000 parts at a time ("ListParts": `max-parts`), from
    /// each page's `NextPartNumberMarker`, until `count` parts are in hand.
    async fn list_parts(
        &self,
        object: &ObjectRef,
        upload_id: &str,
        count: u32,
    ) -> PortResult<Vec<UploadedPart>> {
        let mut parts: Vec<UploadedPart> = Vec::with_capacity(count as usize);
        let mut marker: Option<String> = None;
        // S3 holds at most 10,000 parts: ten full pages, and one more that says it is the last.
        for _ in 0..=10 {
            let page = self
                .client
                .list_parts()
                .bucket(&object.bucket)
                .key(&object.key)
                .upload_id(upload_id)
                .max_parts(1000)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| upload_error("ListParts", upload_id, e))?;
            for part in page.parts() {
                let number = part.part_number().unwrap_or(0).max(0) as u32;
                if (1..=count).contains(&number) {
                    parts.push(UploadedPart {
                        number,
                        etag: part.e_tag().unwrap_or_default().to_owned(),
                        checksum_crc32: part.checksum_crc32().map(str::to_owned),
                    });
                }
            }
            marker = page
                .next_part_number_marker()
                .filter(|_| page.is_truncated() == Some(true))
                .map(str::to_owned);
            if marker.is_none() || parts.len() >= count as usize {
                break;
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        let listed = |n: u32| parts.get(n as usize - 1).map(|p| p.number);
        if let Some(missing) = (1..=count).find(|&n| listed(n) != Some(n)) {
            return Err(export_core::ports::multipart::missing_part(missing, count));
        }
        Ok(parts)
    }

    /// `CopyObject` with `bucket-owner-full-control`, so the partner's bucket owns the copy
    /// ("Controlling ownership of objects", Amazon S3 User Guide: a bucket whose Object
    /// Ownership is "bucket owner preferred" takes objects written with this ACL; one that
    /// enforces bucket-owner ownership accepts it as well). Larger than 5 GB: in parts.
    async fn copy(&self, from: &ObjectRef, to: &ObjectRef) -> PortResult<()> {
        let size = self
            .size_of(from)
            .await?
            .ok_or_else(|| PortError::NotFound(from.s3_url()))?;
        if size > self.single_copy_limit {
            return self.copy_in_parts(from, to, size).await;
        }
        self.client
            .copy_object()
            .bucket(&to.bucket)
            .key(&to.key)
            .copy_source(copy_source(from))
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .send()
            .await
            .map_err(|e| port_error("CopyObject", e))?;
        Ok(())
    }

    async fn presign_get(
        &self,
        object: &ObjectRef,
        expires_in: Duration,
        file_name: &str,
    ) -> PortResult<PresignedUrl> {
        let config = PresigningConfig::expires_in(expires_in.min(MAX_LINK_TTL))
            .map_err(|e| PortError::Rejected(format!("presigning: {e}")))?;
        let request = self
            .links
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .response_content_disposition(format!(
                "attachment; filename=\"{}\"",
                file_name.replace(['"', '\\'], "_")
            ))
            .presigned(config)
            .await
            .map_err(|e| port_error("GetObject (presign)", e))?;
        // Read after signing: signing is what has the SDK fetch credentials when it needs to.
        Ok(PresignedUrl {
            url: request.uri().to_owned(),
            signer_expires_at: self.links.expires_at(),
        })
    }
}

/// An upload that was completed or aborted answers `NoSuchUpload` (404): "The specified
/// multipart upload does not exist" (Amazon S3 API Reference, "Error responses").
fn upload_error<E>(
    operation: &str,
    upload_id: &str,
    error: aws_sdk_s3::error::SdkError<E>,
) -> PortError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if error
        .as_service_error()
        .is_some_and(|e| e.code() == Some("NoSuchUpload"))
    {
        return PortError::NotFound(format!("{operation}: upload {upload_id}"));
    }
    port_error(operation, error)
}

/// `x-amz-copy-source`: the source's bucket and key, the key URL-encoded ("CopyObject",
/// Amazon S3 API Reference).
fn copy_source(from: &ObjectRef) -> String {
    let key = percent_encoding::utf8_percent_encode(&from.key, KEY_ENCODING);
    format!("{}/{key}", from.bucket)
}

/// Everything but S3's unreserved characters and `/` is encoded in a copy source's key.
const KEY_ENCODING: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
