//! Packaging across runs: an archive written in several runs, or by a packager that died and
//! one that carried on, is byte for byte the archive one uninterrupted run writes, and every
//! reader opens it.

use async_trait::async_trait;
use export_core::archive::{
    self, Manifest, ManifestEntry, ManifestMeta, Packaging, Packed, Progress,
};
use export_core::domain::{Archive, ObjectRef};
use export_core::ports::{ObjectStore, PortResult, SavedCheckpoint};
use export_core::settings::PackagingSettings;
use export_core::testing::MemoryObjectStore;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const PART: usize = 4 * 1024;

/// The checkpoints as a control table keeps them: only the next number wins.
#[derive(Default)]
struct Saved {
    checkpoint: Mutex<Option<SavedCheckpoint>>,
    saves: Mutex<usize>,
}

#[async_trait]
impl Progress for Saved {
    async fn save(&self, expected_seq: u64, next: &SavedCheckpoint) -> PortResult<bool> {
        let mut current = self.checkpoint.lock().unwrap();
        if current.as_ref().map_or(0, |c| c.seq) != expected_seq {
            return Ok(false);
        }
        *current = Some(next.clone());
        *self.saves.lock().unwrap() += 1;
        Ok(true)
    }
    async fn heartbeat(&self) -> PortResult<bool> {
        Ok(true)
    }
}

impl Saved {
    fn current(&self) -> Option<SavedCheckpoint> {
        self.checkpoint.lock().unwrap().clone()
    }
}

/// UNLOAD's output as the packager finds it: `parts` CSV files of about `size` bytes each.
fn unload(objects: &MemoryObjectStore, parts: usize, size: usize) -> Manifest {
    let mut entries = Vec::new();
    for p in 0..parts {
        let mut body = String::from("id,name,amount\n");
        let mut i = 0;
        while body.len() < size {
            body.push_str(&format!(
                "{p}{i},name-{:05},{}.{:02}\n",
                i * 37 % 10_000,
                i,
                i % 100
            ));
            i += 1;
        }
        let object = ObjectRef::new("results", format!("exports/r1/0000_part_{p:02}"));
        entries.push(ManifestEntry {
            url: object.s3_url(),
            meta: Some(ManifestMeta {
                content_length: body.len() as u64,
                record_count: i + 1,
            }),
        });
        objects.insert(&object, body.into_bytes());
    }
    Manifest {
        entries,
        meta: None,
    }
}

fn store() -> Arc<MemoryObjectStore> {
    let objects = MemoryObjectStore::default();
    *objects.min_part_size.lock().unwrap() = PART;
    Arc::new(objects)
}

fn settings() -> PackagingSettings {
    PackagingSettings {
        part_size: PART,
        threads: 2,
        margin: Duration::ZERO,
        checkpoint_every: Duration::from_secs(3600),
        heartbeat_every: Duration::from_secs(3600),
        budget: None,
        zip64_entry_size: None,
    }
}

struct Job<'a> {
    objects: Arc<MemoryObjectStore>,
    manifest: &'a Manifest,
    kind: Archive,
    extension: &'a str,
    target: ObjectRef,
    staging: ObjectRef,
    settings: PackagingSettings,
}

impl<'a> Job<'a> {
    fn new(objects: &Arc<MemoryObjectStore>, manifest: &'a Manifest, kind: Archive) -> Job<'a> {
        Job {
            objects: objects.clone(),
            manifest,
            kind,
            extension: "csv",
            target: ObjectRef::new(
                "downloads",
                format!("archives/r1/things.{}", kind.extension()),
            ),
            staging: ObjectRef::new("downloads", "archives/r1/staging/"),
            settings: settings(),
        }
    }

    async fn run(
        &self,
        resume: Option<SavedCheckpoint>,
        deadline: Option<Instant>,
        progress: &Saved,
    ) -> Packed {
        let run = Packaging {
            objects: self.objects.clone(),
            manifest: self.manifest,
            dataset: "things",
            extension: self.extension,
            kind: self.kind,
            target: &self.target,
            staging: &self.staging,
            mtime: 1_800_000_000_000,
            settings: &self.settings,
            deadline,
            header_lines: true,
        };
        archive::package(&run, resume, progress)
            .await
            .expect("packaging")
    }

    /// One uninterrupted run; the archive's bytes.
    async fn whole(&self) -> Vec<u8> {
        let packed = self.run(None, None, &Saved::default()).await;
        assert!(matches!(packed, Packed::Done(_)), "{packed:?}");
        self.objects.read(&self.target).unwrap().to_vec()
    }

    /// Runs that each stop at the first entry boundary (their deadline has passed), each
    /// carrying on from the last one's checkpoint; how many runs it took, and the bytes.
    async fn in_pieces(&self) -> (usize, Vec<u8>) {
        let progress = Saved::default();
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs <= 100, "packaging never finished");
            match self
                .run(progress.current(), Some(Instant::now()), &progress)
                .await
            {
                Packed::Paused { seq } => assert_eq!(seq, runs as u64),
                Packed::Done(_) => break,
                Packed::Superseded => panic!("nothing else saves"),
            }
        }
        (runs, self.objects.read(&self.target).unwrap().to_vec())
    }
}

fn files_of(archive: &[u8], kind: Archive) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    match kind {
        Archive::Zip => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a zip");
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).unwrap();
                let mut body = Vec::new();
                entry
                    .read_to_end(&mut body)
                    .expect("the entry's CRC and size check out");
                files.push((entry.name().unwrap().into_owned(), body));
            }
        }
        _ => {
            let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(archive));
            for entry in tar.entries().unwrap() {
                let mut entry = entry.unwrap();
                let mut body = Vec::new();
                entry.read_to_end(&mut body).unwrap();
                files.push((entry.path().unwrap().to_string_lossy().into_owned(), body));
            }
        }
    }
    files
}

fn parts_of(objects: &MemoryObjectStore, manifest: &Manifest) -> Vec<Vec<u8>> {
    manifest
        .entries
        .iter()
        .map(|e| {
            objects
                .read(&ObjectRef::parse_s3_url(&e.url).unwrap())
                .unwrap()
                .to_vec()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_written_in_many_runs_is_the_one_a_single_run_writes() {
    for kind in [Archive::Zip, Archive::TarGz] {
        let objects = store();
        let manifest = unload(&objects, 7, 30_000);
        let job = Job::new(&objects, &manifest, kind);
        let whole = job.whole().await;
        let (runs, pieces) = job.in_pieces().await;
        assert_eq!(runs, 7, "{kind}: one entry a run");
        assert!(pieces == whole, "{kind}: the archives differ");
        let files = files_of(&pieces, kind);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "things-0000.csv");
        assert_eq!(names.len(), 7);
        let bodies: Vec<Vec<u8>> = files.into_iter().map(|(_, b)| b).collect();
        assert_eq!(bodies, parts_of(&objects, &manifest), "{kind}");
        // Several parts, each but the last of the part size; nothing left behind.
        assert!(pieces.len() > 3 * PART, "{kind}: {} bytes", pieces.len());
        assert_eq!(objects.open_uploads(), 0, "{kind}");
        assert_eq!(
            objects.keys("downloads", "archives/r1/staging/"),
            Vec::<String>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_and_zip64_entries_read_back_too() {
    let objects = store();
    let manifest = unload(&objects, 3, 20_000);
    // Parts that are compressed already are stored as they are.
    let mut stored = Job::new(&objects, &manifest, Archive::Zip);
    stored.extension = "csv.gz";
    let whole = stored.whole().await;
    let (_, pieces) = stored.in_pieces().await;
    assert!(pieces == whole);
    let zip = zip::ZipArchive::new(std::io::Cursor::new(&pieces[..])).unwrap();
    let mut zip = zip;
    assert_eq!(
        zip.by_index(1).unwrap().compression(),
        zip::CompressionMethod::Stored
    );
    let bodies: Vec<Vec<u8>> = files_of(&pieces, Archive::Zip)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, parts_of(&objects, &manifest));
    // ZIP64 local fields, as entries of 4 GiB and more get them, on small data.
    let mut zip64 = Job::new(&objects, &manifest, Archive::Zip);
    zip64.settings.zip64_entry_size = Some(1);
    let archive = zip64.whole().await;
    let (_, again) = zip64.in_pieces().await;
    assert!(archive == again);
    let bodies: Vec<Vec<u8>> = files_of(&archive, Archive::Zip)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, parts_of(&objects, &manifest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packager_that_dies_is_carried_on_from_its_last_checkpoint() {
    let objects = store();
    let manifest = unload(&objects, 6, 25_000);
    let mut job = Job::new(&objects, &manifest, Archive::TarGz);
    let whole = job.whole().await;
    objects.delete(&job.target).await.unwrap();
    // A checkpoint at every entry boundary; the run dies reading the fifth part.
    job.settings.checkpoint_every = Duration::ZERO;
    let progress = Saved::default();
    let first_get = objects.gets();
    let reads = || objects.gets() - first_get;
    let run = job.run(None, None, &progress);
    let crash_point = async {
        // Four entries go through; the fifth part's read is held for ever.
        while reads() < 4 {
            tokio::task::yield_now().await;
        }
        let hold = objects.hold_next_get();
        while reads() < 5 {
            tokio::task::yield_now().await;
        }
        hold
    };
    let stopped = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            packed = run => Err(packed),
            hold = crash_point => Ok(hold),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the run never reached its fifth read ({} reads)", reads()));
    // The run is dropped at its held read, as a crash drops it.
    let _hold = stopped.unwrap_or_else(|packed| panic!("the run ended: {packed:?}"));
    let saved = progress
        .current()
        .expect("checkpoints were saved before the crash");
    assert_eq!(
        saved.seq, 4,
        "a checkpoint before each entry after the first"
    );
    assert!(objects.read(&job.target).is_none(), "no archive yet");
    // The next packager reads only what the checkpoint had not covered.
    let before = objects.gets();
    let packed = job.run(Some(saved.clone()), None, &progress).await;
    assert!(matches!(packed, Packed::Done(_)), "{packed:?}");
    let reads = objects.gets() - before;
    assert!(
        reads <= 6 - saved.seq as usize + 1,
        "{reads} reads after checkpoint {}",
        saved.seq
    );
    assert!(objects.read(&job.target).unwrap().to_vec() == whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_packagers_on_one_checkpoint_only_one_goes_on() {
    let objects = store();
    let manifest = unload(&objects, 4, 20_000);
    let job = Job::new(&objects, &manifest, Archive::Zip);
    let progress = Saved::default();
    let first = job.run(None, Some(Instant::now()), &progress).await;
    assert_eq!(first, Packed::Paused { seq: 1 });
    let from = progress.current();
    // Both resume from checkpoint 1; the first to save the next one wins.
    assert_eq!(
        job.run(from.clone(), Some(Instant::now()), &progress).await,
        Packed::Paused { seq: 2 }
    );
    assert_eq!(
        job.run(from, Some(Instant::now()), &progress).await,
        Packed::Superseded
    );
    // The loser's staged bytes are gone; the winner's checkpoint carries the job to the end.
    let staged = objects.keys("downloads", "archives/r1/staging/");
    assert_eq!(staged.len(), 1, "{staged:?}");
    match job.run(progress.current(), None, &progress).await {
        Packed::Done(done) => assert_eq!(done.files, 4),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        objects.open_uploads(),
        0,
        "the loser's own upload is aborted"
    );
    let bodies: Vec<Vec<u8>> = files_of(&objects.read(&job.target).unwrap(), Archive::Zip)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bodies, parts_of(&objects, &manifest));
}

#[tokio::test]
async fn an_upload_gone_behind_the_checkpoint_starts_over() {
    let objects = store();
    let manifest = unload(&objects, 3, 10_000);
    let job = Job::new(&objects, &manifest, Archive::Zip);
    let whole = job.whole().await;
    let progress = Saved::default();
    assert_eq!(
        job.run(None, Some(Instant::now()), &progress).await,
        Packed::Paused { seq: 1 }
    );
    // The upload was aborted (a lifecycle rule, an operator): the archive is written anew.
    let saved = progress.current().unwrap();
    let upload: serde_json::Value = serde_json::from_str(&saved.body).unwrap();
    objects
        .abort_multipart(&job.target, upload["upload_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        job.run(Some(saved), None, &progress).await,
        Packed::Done(_)
    ));
    assert!(objects.read(&job.target).unwrap().to_vec() == whole);
}

/// A checkpoint counts its parts and leaves their ETags with the store, which lists them when
/// a run carries on ("ListParts"): its size does not grow with the archive's parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_counts_its_parts_and_the_store_lists_them_on_resume() {
    let objects = store();
    let manifest = unload(&objects, 7, 30_000);
    let job = Job::new(&objects, &manifest, Archive::TarGz);
    let whole = job.whole().await;
    let progress = Saved::default();
    let mut counted = Vec::new();
    loop {
        // Each run writes at least one entry of the seven: more runs than that never finish.
        assert!(
            counted.len() <= manifest.entries.len(),
            "packaging never finished: {counted:?}"
        );
        match job
            .run(progress.current(), Some(Instant::now()), &progress)
            .await
        {
            Packed::Paused { .. } => {
                let saved = progress.current().unwrap();
                let body: serde_json::Value = serde_json::from_str(&saved.body).unwrap();
                assert!(body.get("parts").is_none(), "no ETags: {body}");
                counted.push(body["part_count"].as_u64().unwrap());
            }
            Packed::Done(_) => break,
            Packed::Superseded => panic!("nothing else saves"),
        }
    }
    assert!(counted.last() > Some(&1), "several parts: {counted:?}");
    assert!(objects.read(&job.target).unwrap().to_vec() == whole);
}

/// A checkpoint saved before checkpoints counted their parts (the parts and their ETags in
/// it, its upload created without a checksum algorithm, which S3 would not complete with the
/// parts' new checksums) starts the archive anew, its upload aborted, so packaging under way
/// across an upgrade still finishes; and so does a part the store no longer has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_checkpoints_and_missing_parts_still_finish_the_archive() {
    let objects = store();
    let manifest = unload(&objects, 7, 30_000);
    let job = Job::new(&objects, &manifest, Archive::Zip);
    let whole = job.whole().await;
    let progress = Saved::default();
    for _ in 0..5 {
        let packed = job
            .run(progress.current(), Some(Instant::now()), &progress)
            .await;
        assert!(matches!(packed, Packed::Paused { .. }), "{packed:?}");
    }
    let saved = progress.current().unwrap();
    let mut body: serde_json::Value = serde_json::from_str(&saved.body).unwrap();
    let upload = body["upload_id"].as_str().unwrap().to_owned();
    let count = body["part_count"].as_u64().unwrap() as u32;
    assert!(count >= 2, "{body}");
    let parts = objects
        .list_parts(&job.target, &upload, count)
        .await
        .unwrap();
    // The older form: the parts listed in the checkpoint, no count.
    body.as_object_mut().unwrap().remove("part_count");
    body["parts"] = serde_json::to_value(&parts).unwrap();
    let older = SavedCheckpoint {
        seq: saved.seq,
        body: body.to_string(),
    };
    let done = job.run(Some(older.clone()), None, &Saved::default()).await;
    assert!(matches!(done, Packed::Done(_)), "{done:?}");
    assert!(objects.read(&job.target).unwrap().to_vec() == whole);
    assert_eq!(objects.open_uploads(), 0, "the older upload was aborted");

    // Counted again, with a part gone from the store: written anew, the same bytes.
    let retry = Job::new(&objects, &manifest, Archive::Zip);
    let progress = Saved::default();
    for _ in 0..5 {
        retry
            .run(progress.current(), Some(Instant::now()), &progress)
            .await;
    }
    let saved = progress.current().unwrap();
    let body: serde_json::Value = serde_json::from_str(&saved.body).unwrap();
    objects.forget_part(body["upload_id"].as_str().unwrap(), 1);
    let done = retry.run(Some(saved), None, &progress).await;
    assert!(matches!(done, Packed::Done(_)), "{done:?}");
    assert!(objects.read(&retry.target).unwrap().to_vec() == whole);
}
