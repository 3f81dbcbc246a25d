//! What every object store must do, as S3's API Reference has it, as one suite each adapter
//! runs against its own engine (the in-memory fake, the local directory tree, S3 on the
//! emulator). Each check writes under a fresh prefix, so the checks can share a bucket with
//! each other and with other tests.

use crate::domain::ObjectRef;
use crate::ports::{multipart::MIN_PART_SIZE, ObjectStore, PortError, UploadedPart};
use bytes::Bytes;
use std::time::Duration;

/// Runs every check against `store`, in `bucket`.
pub async fn check_object_store(store: &dyn ObjectStore, bucket: &str) {
    objects_are_written_read_and_removed(store, bucket).await;
    uploads_are_carried_on_by_number_and_etag(store, bucket).await;
    completing_checks_the_parts_it_is_given(store, bucket).await;
    an_ended_upload_is_gone(store, bucket).await;
}

fn fresh(bucket: &str, name: &str) -> ObjectRef {
    ObjectRef::new(
        bucket,
        format!("conformance/{}/{name}", uuid::Uuid::new_v4().simple()),
    )
}

async fn read(store: &dyn ObjectStore, object: &ObjectRef) -> Vec<u8> {
    crate::archive::read_object(store, object)
        .await
        .expect("the object reads back")
        .to_vec()
}

/// "GetObject" answers `NoSuchKey` for a key that is not there, "HeadObject" 404, and
/// "DeleteObject" succeeds whether or not the key is there.
pub async fn objects_are_written_read_and_removed(store: &dyn ObjectStore, bucket: &str) {
    let object = fresh(bucket, "a b/ü.txt");
    assert!(matches!(
        store.get(&object).await.map(drop),
        Err(PortError::NotFound(_))
    ));
    assert_eq!(store.size_of(&object).await.unwrap(), None);
    store.delete(&object).await.unwrap();
    store
        .put(&object, Bytes::from_static(b"hello"), "text/plain")
        .await
        .unwrap();
    assert_eq!(read(store, &object).await, b"hello");
    assert_eq!(store.size_of(&object).await.unwrap(), Some(5));
    // A second PUT replaces the object whole.
    store
        .put(&object, Bytes::from_static(b"bye"), "text/plain")
        .await
        .unwrap();
    assert_eq!(read(store, &object).await, b"bye");
    let link = store
        .presign_get(&object, Duration::from_secs(600), "file.txt")
        .await
        .unwrap();
    assert!(!link.url.is_empty());
    store.delete(&object).await.unwrap();
    assert_eq!(store.size_of(&object).await.unwrap(), None);
}

/// Parts are named by number and ETag ("CompleteMultipartUpload"); another process carries
/// an upload on with the upload id alone, listing what is there ("ListParts"); the object
/// appears whole when the upload completes, its parts in order.
pub async fn uploads_are_carried_on_by_number_and_etag(store: &dyn ObjectStore, bucket: &str) {
    let target = fresh(bucket, "carried-on.tar.gz");
    let upload = store
        .create_multipart(&target, "application/gzip")
        .await
        .unwrap();
    let first = vec![7u8; MIN_PART_SIZE];
    let part1 = store
        .upload_part(&target, &upload, 1, Bytes::from(first.clone()))
        .await
        .unwrap();
    let part2 = store
        .upload_part(
            &target,
            &upload,
            2,
            Bytes::from_static(b"the short last part"),
        )
        .await
        .unwrap();
    assert_eq!((part1.number, part2.number), (1, 2));
    assert!(part1.etag.starts_with('"') && part1.etag != part2.etag);
    assert_eq!(
        store.size_of(&target).await.unwrap(),
        None,
        "not before completing"
    );
    let listed = store.list_parts(&target, &upload, 2).await.unwrap();
    assert_eq!(listed, [part1.clone(), part2.clone()]);
    let first_only = store.list_parts(&target, &upload, 1).await.unwrap();
    assert_eq!(first_only, std::slice::from_ref(&part1));
    assert!(matches!(
        store.list_parts(&target, &upload, 3).await,
        Err(PortError::NotFound(_))
    ));
    // The same part again replaces it; the same bytes give the same ETag.
    let again = store
        .upload_part(&target, &upload, 1, Bytes::from(first.clone()))
        .await
        .unwrap();
    assert_eq!(again.etag, part1.etag);
    store
        .complete_multipart(&target, &upload, &listed)
        .await
        .unwrap();
    let body = read(store, &target).await;
    assert_eq!(body.len(), MIN_PART_SIZE + 19);
    assert!(body[..first.len()] == first[..] && &body[first.len()..] == b"the short last part");
    store.delete(&target).await.unwrap();
}

/// "CompleteMultipartUpload": a part under 5 MiB that is not the last is `EntityTooSmall`, an
/// ETag that is not the part's `InvalidPart`, parts out of order `InvalidPartOrder`; each
/// leaves the upload as it was. "UploadPart": part numbers run from 1 to 10,000.
pub async fn completing_checks_the_parts_it_is_given(store: &dyn ObjectStore, bucket: &str) {
    let target = fresh(bucket, "checked.zip");
    let upload = store
        .create_multipart(&target, "application/zip")
        .await
        .unwrap();
    let beyond = store
        .upload_part(&target, &upload, 10_001, Bytes::from_static(b"x"))
        .await;
    assert!(matches!(beyond, Err(PortError::Rejected(_))), "{beyond:?}");
    let tiny = store
        .upload_part(&target, &upload, 1, Bytes::from_static(b"tiny"))
        .await
        .unwrap();
    let tail = store
        .upload_part(&target, &upload, 2, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let refused = store
        .complete_multipart(&target, &upload, &[tiny.clone(), tail.clone()])
        .await;
    assert!(
        matches!(&refused, Err(PortError::Rejected(m)) if m.contains("EntityTooSmall")),
        "{refused:?}"
    );
    let whole = store
        .upload_part(&target, &upload, 1, Bytes::from(vec![1u8; MIN_PART_SIZE]))
        .await
        .unwrap();
    let forged = UploadedPart {
        etag: "\"00000000000000000000000000000000\"".into(),
        ..tail.clone()
    };
    let refused = store
        .complete_multipart(&target, &upload, &[whole.clone(), forged])
        .await;
    assert!(
        matches!(refused, Err(PortError::Rejected(_))),
        "{refused:?}"
    );
    let refused = store
        .complete_multipart(&target, &upload, &[tail.clone(), whole.clone()])
        .await;
    assert!(
        matches!(refused, Err(PortError::Rejected(_))),
        "{refused:?}"
    );
    // Refusals left the upload as it was: it completes with the right parts.
    store
        .complete_multipart(&target, &upload, &[whole, tail])
        .await
        .unwrap();
    assert_eq!(
        store.size_of(&target).await.unwrap(),
        Some(MIN_PART_SIZE as u64 + 4)
    );
    store.delete(&target).await.unwrap();
}

/// An upload that was completed or aborted is gone: `NoSuchUpload` ("UploadPart",
/// "ListParts"); aborting what is gone succeeds, and an aborted upload leaves no object.
pub async fn an_ended_upload_is_gone(store: &dyn ObjectStore, bucket: &str) {
    let done = fresh(bucket, "done.bin");
    let upload = store
        .create_multipart(&done, "application/octet-stream")
        .await
        .unwrap();
    let part = store
        .upload_part(&done, &upload, 1, Bytes::from_static(b"all of it"))
        .await
        .unwrap();
    store
        .complete_multipart(&done, &upload, &[part])
        .await
        .unwrap();
    let late = store
        .upload_part(&done, &upload, 2, Bytes::from_static(b"late"))
        .await;
    assert!(matches!(late, Err(PortError::NotFound(_))), "{late:?}");
    assert!(matches!(
        store.list_parts(&done, &upload, 1).await,
        Err(PortError::NotFound(_))
    ));
    store.delete(&done).await.unwrap();

    let dropped = fresh(bucket, "dropped.bin");
    let upload = store
        .create_multipart(&dropped, "application/octet-stream")
        .await
        .unwrap();
    store
        .upload_part(&dropped, &upload, 1, Bytes::from_static(b"never kept"))
        .await
        .unwrap();
    store.abort_multipart(&dropped, &upload).await.unwrap();
    store.abort_multipart(&dropped, &upload).await.unwrap();
    let late = store
        .upload_part(&dropped, &upload, 2, Bytes::from_static(b"x"))
        .await;
    assert!(matches!(late, Err(PortError::NotFound(_))), "{late:?}");
    assert_eq!(store.size_of(&dropped).await.unwrap(), None);
}
