//! `bench-lambda`'s packaging section: one export of several GiB, already UNLOADed into S3
//! (moto), packaged by the poller binary every way it can be — zip, stored zip, tar.gz — and
//! once more across several invocations with a short timeout, beside a plain copy of the same
//! parts into one object and the time `archive: none` takes to succeed. Side by side in one
//! run, on the same emulated S3.

use crate::bench_lambda::{no_failures, FunctionProcess, LambdaBenchOptions};
use anyhow::{bail, Context};
use export_aws::dynamodb::DynamoControlTable;
use export_aws::s3::S3ObjectStore;
use export_core::archive::read_manifest;
use export_core::domain::{
    Archive, Compression, Format, Job, JobEvent, JobStatus, JobUpdate, ObjectRef, Owner, Transition,
};
use export_core::ports::{ControlTable, ObjectStore};
use export_emulator::events::sample;
use export_emulator::Emulator;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const GIB: f64 = (1024 * 1024 * 1024) as f64;
/// Each part as UNLOAD writes them at `MAXFILESIZE 128 MB`.
const PART_BYTES: u64 = 128 * MIB;

/// Writes `gib` GiB of lineitem-like CSV as UNLOAD parts and a verbose manifest under the
/// job's prefix; returns the prefix's manifest object.
async fn unload(emulator: &Emulator, request_id: &str, gib: f64) -> anyhow::Result<ObjectRef> {
    let store = S3ObjectStore::new(emulator.clients.s3.clone());
    let total = (gib * GIB) as u64;
    let parts = total.div_ceil(PART_BYTES);
    let mut entries = Vec::new();
    let mut row = 0u64;
    for p in 0..parts {
        let object = ObjectRef::new(
            &emulator.results_bucket,
            format!("exports/{request_id}/0000_part_{p:02}"),
        );
        let target = PART_BYTES.min(total - p * PART_BYTES) as usize;
        let mut body = String::with_capacity(target + 256);
        body.push_str("l_orderkey,l_linenumber,o_orderdate,o_custkey,l_partkey,l_suppkey,l_quantity,l_extendedprice,l_discount,l_tax,l_returnflag,l_shipdate,l_shipmode\n");
        let mut records = 1u64;
        while body.len() < target {
            let r = row;
            body.push_str(&format!(
                "{},{},199{}-{:02}-{:02},{},{},{},{}.00,{}.{:02},0.0{},0.0{},{},199{}-{:02}-{:02},{}\n",
                r / 4 + 1,
                r % 4 + 1,
                2 + r % 7,
                1 + r % 12,
                1 + r % 28,
                r * 7 % 150_000,
                r * 13 % 200_000,
                r * 17 % 10_000,
                1 + r % 50,
                900 + r * 31 % 100_000,
                r % 100,
                r % 10,
                r % 8,
                ["A", "N", "R"][(r % 3) as usize],
                2 + (r + 1) % 7,
                1 + (r + 3) % 12,
                1 + (r + 5) % 28,
                ["AIR", "MAIL", "RAIL", "SHIP", "TRUCK", "FOB", "REG AIR"][(r % 7) as usize],
            ));
            row += 1;
            records += 1;
        }
        let size = body.len() as u64;
        store.put(&object, body.into(), "text/csv").await?;
        entries.push(json!({"url": object.s3_url(), "meta": {"content_length": size, "record_count": records}}));
    }
    let manifest = ObjectRef::new(
        &emulator.results_bucket,
        format!("exports/{request_id}/manifest"),
    );
    let body = json!({"entries": entries, "meta": {"record_count": row + parts}});
    store
        .put(&manifest, body.to_string().into(), "application/json")
        .await?;
    Ok(manifest)
}

/// Records a job whose UNLOAD has finished into `prefix_of`'s parts and whose packaging lease
/// has run out, so the poller's first look packages it.
async fn packaging_job(
    control: &DynamoControlTable,
    parts_of: &str,
    archive: Archive,
    compression: Compression,
    created_at: i64,
) -> anyhow::Result<String> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let job = Job {
        request_id: request_id.clone(),
        owner: Owner("arn:aws:iam::123456789012:user/bench".into()),
        dataset: "shipped_lineitems".into(),
        params: serde_json::Map::new(),
        format: Format::Csv,
        compression,
        archive,
        notify: vec![],
        deliver: Vec::new(),
        bound: vec![],
        status: JobStatus::Queued,
        created_at,
        updated_at: created_at,
        statement_id: None,
        unload_attempt: 0,
        priority: 1,
        turns_of: None,
        rows: None,
        bytes: None,
        archive_object: None,
        error: None,
        notified_at: None,
        subscription_id: None,
    };
    control
        .create_job(
            &job,
            &JobEvent::new(created_at, "submitted", "ok", ""),
            None,
        )
        .await?;
    for (transition, step) in [
        (Transition::START, "started"),
        (Transition::FINISH, "finished"),
    ] {
        let update = JobUpdate {
            statement_id: Some(format!("bench-{parts_of}")),
            ..JobUpdate::default()
        };
        let moved = control
            .transition(
                &request_id,
                transition,
                &update,
                &JobEvent::new(created_at, step, "ok", ""),
            )
            .await?;
        anyhow::ensure!(moved, "job {request_id}: {transition}");
    }
    Ok(request_id)
}

/// The parts of `from`'s UNLOAD, copied for job `to` (S3 copies them server-side).
async fn share_parts(emulator: &Emulator, from: &str, to: &str) -> anyhow::Result<()> {
    let store = S3ObjectStore::new(emulator.clients.s3.clone());
    let manifest_ref = ObjectRef::new(&emulator.results_bucket, format!("exports/{from}/manifest"));
    let manifest = read_manifest(&store, &manifest_ref).await?;
    let mut entries = Vec::new();
    for entry in &manifest.entries {
        let key = entry.url.rsplit('/').next().context("a part key")?;
        let target = format!("exports/{to}/{key}");
        emulator
            .clients
            .s3
            .copy_object()
            .bucket(&emulator.results_bucket)
            .key(&target)
            .copy_source(format!("{}/exports/{from}/{key}", emulator.results_bucket))
            .send()
            .await?;
        let meta = entry.meta.clone().unwrap_or_default();
        entries.push(json!({
            "url": format!("s3://{}/{target}", emulator.results_bucket),
            "meta": {"content_length": meta.content_length, "record_count": meta.record_count},
        }));
    }
    let body = json!({"entries": entries, "meta": {"record_count": manifest.meta.map(|m| m.record_count).unwrap_or(0)}});
    store
        .put(
            &ObjectRef::new(&emulator.results_bucket, format!("exports/{to}/manifest")),
            body.to_string().into(),
            "application/json",
        )
        .await?;
    Ok(())
}

/// GET + multipart PUT of every part into one object, 8 MiB parts, one in flight while the
/// next fills: what packaging costs with no archive format and no compression.
async fn plain_copy(emulator: &Emulator, request_id: &str) -> anyhow::Result<(Duration, u64)> {
    use futures::StreamExt;
    let store = S3ObjectStore::new(emulator.clients.s3.clone());
    let manifest = read_manifest(
        &store,
        &ObjectRef::new(
            &emulator.results_bucket,
            format!("exports/{request_id}/manifest"),
        ),
    )
    .await?;
    let target = ObjectRef::new(&emulator.downloads_bucket, format!("copies/{request_id}"));
    let started = Instant::now();
    let upload = store.create_multipart(&target, "text/csv").await?;
    let spawn = |body: Vec<u8>, number: u32| {
        let (store, target, upload) = (store.clone(), target.clone(), upload.clone());
        tokio::spawn(async move {
            store
                .upload_part(&target, &upload, number, body.into())
                .await
        })
    };
    let part_size = 8 * MIB as usize;
    let mut parts = Vec::new();
    let mut sending = None;
    let mut buffer = Vec::with_capacity(part_size);
    let mut written = 0u64;
    for entry in &manifest.entries {
        let part = ObjectRef::parse_s3_url(&entry.url).context("a part URL")?;
        let mut stream = store.get(&part).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= part_size {
                let body = std::mem::replace(&mut buffer, Vec::with_capacity(part_size));
                if let Some(previous) = sending.take() {
                    parts.push(previous.await??);
                }
                sending = Some(spawn(body, parts.len() as u32 + 1));
            }
        }
    }
    if let Some(previous) = sending.take() {
        parts.push(previous.await??);
    }
    if !buffer.is_empty() {
        parts.push(spawn(buffer, parts.len() as u32 + 1).await??);
    }
    store.complete_multipart(&target, &upload, &parts).await?;
    let elapsed = started.elapsed();
    store.delete(&target).await?;
    Ok((elapsed, written))
}

/// Invokes a cold poller with a first look at the job, then with each continuation it queues,
/// until the job has succeeded; the invocations, the time, the poller's peak memory.
async fn package(
    options: &LambdaBenchOptions,
    emulator: &Emulator,
    control: &DynamoControlTable,
    request_id: &str,
    timeout: Duration,
) -> anyhow::Result<(usize, Duration, f64, Job)> {
    let poller = FunctionProcess::start_with(
        "poller",
        options,
        emulator,
        timeout,
        &[
            ("PACKAGING_MARGIN_SECONDS", "2"),
            ("PACKAGING_LEASE_SECONDS", "60"),
        ],
    )
    .await?;
    let started = Instant::now();
    let mut event = sample("poller-sqs-follow-up.json", request_id)?;
    let mut invocations = 0;
    loop {
        invocations += 1;
        no_failures(&poller.invoke(&event).await?)?;
        let job = control.get_job(request_id).await?.context("the job")?;
        if job.status == JobStatus::Succeeded {
            let elapsed = started.elapsed();
            let peak = poller.peak_rss_mib()?;
            poller.stop().await;
            return Ok((invocations, elapsed, peak, job));
        }
        if job.status != JobStatus::Packaging {
            bail!("job {request_id} is {}: {:?}", job.status, job.error);
        }
        // The continuation the poller queued: the next invocation's event.
        let received = emulator
            .clients
            .sqs
            .receive_message()
            .queue_url(&emulator.polls_url)
            .wait_time_seconds(5)
            .max_number_of_messages(1)
            .send()
            .await?;
        let message = received
            .messages()
            .first()
            .context("the poller paused but queued no continuation")?;
        emulator
            .clients
            .sqs
            .delete_message()
            .queue_url(&emulator.polls_url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await?;
        event["Records"][0]["body"] = json!(message.body().unwrap_or_default());
    }
}

/// What resuming cost a job, from the poller's log: each pause's checkpoint (the part in
/// flight, the tail staged, the control-table transaction) and each gap from one run's pause
/// to the next run's being ready to write (the continuation queued and delivered, the job,
/// manifest, checkpoint and tail read back). Everything else a resumed run does, an
/// uninterrupted one does too.
fn resume_overhead(options: &LambdaBenchOptions, request_id: &str) -> anyhow::Result<Duration> {
    let log = std::fs::read_to_string(options.data_dir.join("poller.log"))?;
    let mut total = Duration::ZERO;
    let mut paused_at = None;
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry["span"]["request_id"] != request_id {
            continue;
        }
        let at = chrono::DateTime::parse_from_rfc3339(entry["timestamp"].as_str().unwrap_or(""))?;
        match entry["message"].as_str() {
            Some("packaging paused before the deadline") => {
                total += Duration::from_millis(entry["checkpoint_ms"].as_u64().unwrap_or(0));
                paused_at = Some(at);
            }
            Some("packaging resumes from its checkpoint") => {
                if let Some(paused) = paused_at.take() {
                    total += (at - paused).to_std().unwrap_or_default();
                }
            }
            _ => {}
        }
    }
    Ok(total)
}

/// An archive's size and ETag, after which it is removed: moto keeps every object on local
/// disk, and a run of the benchmark writes tens of GiB of archives.
async fn size_and_remove(emulator: &Emulator, object: &ObjectRef) -> anyhow::Result<(i64, String)> {
    let head = emulator
        .clients
        .s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await?;
    emulator
        .clients
        .s3
        .delete_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await?;
    Ok((
        head.content_length().unwrap_or(0),
        head.e_tag().unwrap_or_default().to_owned(),
    ))
}

/// The packaging section of the report.
pub async fn run(
    options: &LambdaBenchOptions,
    emulator: &Emulator,
    control: &DynamoControlTable,
) -> anyhow::Result<String> {
    let gib = options.packaging_gib;
    let source = uuid::Uuid::new_v4().to_string();
    eprintln!("writing {gib} GiB of UNLOAD parts to S3…");
    unload(emulator, &source, gib).await?;
    let store = S3ObjectStore::new(emulator.clients.s3.clone());
    let manifest = read_manifest(
        &store,
        &ObjectRef::new(
            &emulator.results_bucket,
            format!("exports/{source}/manifest"),
        ),
    )
    .await?;
    let parts_bytes = manifest.content_length();
    let created_at = chrono_now_ms() - 3_600_000;
    let mut report = format!(
        "Packaging one export of {:.2} GiB ({} CSV parts of at most 128 MiB, {} rows) in the poller binary, parts read from and archives written to S3 (moto), each way in turn:\n\n| way | invocations | time | throughput | vs plain copy | archive | poller peak RSS |\n|---|---|---|---|---|---|---|\n",
        parts_bytes as f64 / GIB,
        manifest.entries.len(),
        manifest.data_rows(true),
    );
    let mib_s = |d: Duration| parts_bytes as f64 / MIB as f64 / d.as_secs_f64();

    eprintln!("plain copy…");
    let (copy_time, copied) = plain_copy(emulator, &source).await?;
    anyhow::ensure!(copied == parts_bytes, "copied {copied} of {parts_bytes}");
    report.push_str(&format!(
        "| plain copy (GET + multipart PUT, in-process) | – | {:.1} s | {:.0} MiB/s | 1.00x | {:.2} GiB | – |\n",
        copy_time.as_secs_f64(),
        mib_s(copy_time),
        copied as f64 / GIB
    ));

    let whole = Duration::from_secs(900);
    let mut zip_time = Duration::ZERO;
    let mut zip_archive = None;
    for (label, archive, compression) in [
        ("zip (deflate, level 1)", Archive::Zip, Compression::None),
        (
            "zip, stored (parts already compressed)",
            Archive::Zip,
            Compression::Gzip,
        ),
        (
            "tar.gz (gzip members, level 1)",
            Archive::TarGz,
            Compression::None,
        ),
    ] {
        eprintln!("{label}…");
        let id = packaging_job(control, &source, archive, compression, created_at).await?;
        share_parts(emulator, &source, &id).await?;
        let (invocations, time, peak, job) =
            package(options, emulator, control, &id, whole).await?;
        let object = job.archive_object.clone().context("an archive")?;
        let (size, etag) = size_and_remove(emulator, &object).await?;
        if archive == Archive::Zip && compression == Compression::None {
            zip_time = time;
            zip_archive = Some((size, etag));
        }
        report.push_str(&format!(
            "| {label} | {invocations} | {:.1} s | {:.0} MiB/s | {:.2}x | {:.2} GiB | {:.1} MiB |\n",
            time.as_secs_f64(),
            mib_s(time),
            copy_time.as_secs_f64() / time.as_secs_f64(),
            size as f64 / GIB,
            peak,
        ));
    }

    // The zip again, in invocations a quarter as long as the whole took (at least 10 s), so
    // that it takes several; then pairs of uninterrupted and resumed zips, taking turns at
    // going first, for the cost of resuming as a median rather than one noisy difference.
    let timeout = (zip_time / 4).max(Duration::from_secs(10));
    let zip_archive = zip_archive.context("the zip's size and ETag")?;
    let mut pairs: Vec<(Duration, Duration, usize, Duration)> = Vec::new();
    let mut resumed_row = None;
    for pair in 0..options.resume_pairs.max(1) {
        let mut times = [Duration::ZERO; 2];
        let mut resumed_invocations = 0;
        let mut overhead = Duration::ZERO;
        let order = if pair % 2 == 0 { [1, 0] } else { [0, 1] };
        for way in order {
            let resumed = way == 1;
            let budget = if resumed { timeout } else { whole };
            eprintln!(
                "pair {}: zip, {}…",
                pair + 1,
                if resumed {
                    format!("resumed, {timeout:?} per invocation")
                } else {
                    "uninterrupted".to_owned()
                }
            );
            let id = packaging_job(
                control,
                &source,
                Archive::Zip,
                Compression::None,
                created_at,
            )
            .await?;
            share_parts(emulator, &source, &id).await?;
            let (invocations, time, peak, job) =
                package(options, emulator, control, &id, budget).await?;
            let object = job.archive_object.clone().context("an archive")?;
            let archive = size_and_remove(emulator, &object).await?;
            anyhow::ensure!(
                archive == zip_archive,
                "the {} zip differs from the first: {archive:?} against {zip_archive:?}",
                if resumed { "resumed" } else { "uninterrupted" }
            );
            times[way] = time;
            if resumed {
                resumed_invocations = invocations;
                overhead = resume_overhead(options, &id)?;
                if resumed_row.is_none() {
                    resumed_row = Some((invocations, time, peak, archive.0));
                }
            }
        }
        pairs.push((times[0], times[1], resumed_invocations, overhead));
    }
    let (invocations, time, peak, size) = resumed_row.context("a resumed run")?;
    report.push_str(&format!(
        "| zip, resumed ({:.0} s invocations) | {invocations} | {:.1} s | {:.0} MiB/s | {:.2}x | {:.2} GiB, same size and ETag as the uninterrupted zip | {:.1} MiB |\n",
        timeout.as_secs_f64(),
        time.as_secs_f64(),
        mib_s(time),
        copy_time.as_secs_f64() / time.as_secs_f64(),
        size as f64 / GIB,
        peak,
    ));

    eprintln!("archive none…");
    let id = packaging_job(
        control,
        &source,
        Archive::None,
        Compression::None,
        created_at,
    )
    .await?;
    share_parts(emulator, &source, &id).await?;
    let (invocations, time, peak, _) = package(options, emulator, control, &id, whole).await?;
    report.push_str(&format!(
        "| archive \"none\" (to SUCCEEDED: manifest read, links signed, mail sent) | {invocations} | {:.2} s | – | – | – | {:.1} MiB |\n",
        time.as_secs_f64(),
        peak,
    ));
    report.push_str(&format!(
        "\nThe cost of resuming: {} pairs of the same zip, uninterrupted and in {:.0}-s invocations, taking turns at going first (every archive the same size and ETag):\n\n| pair | uninterrupted | resumed | invocations | difference | resuming's own work (checkpoints, hand-overs) |\n|---|---|---|---|---|---|\n",
        pairs.len(),
        timeout.as_secs_f64(),
    ));
    let mut costs = Vec::new();
    let mut own = Vec::new();
    for (i, (whole, resumed, invocations, overhead)) in pairs.iter().enumerate() {
        let cost = resumed.as_secs_f64() / whole.as_secs_f64() - 1.0;
        costs.push(cost);
        own.push(overhead.as_secs_f64() / whole.as_secs_f64());
        report.push_str(&format!(
            "| {} | {:.1} s | {:.1} s | {invocations} | {:+.1}% | {:.2} s ({:.1}%) |\n",
            i + 1,
            whole.as_secs_f64(),
            resumed.as_secs_f64(),
            cost * 100.0,
            overhead.as_secs_f64(),
            overhead.as_secs_f64() / whole.as_secs_f64() * 100.0,
        ));
    }
    let median_of = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        }
    };
    let whole_median = median_of(pairs.iter().map(|p| p.0.as_secs_f64()).collect());
    let resumed_median = median_of(pairs.iter().map(|p| p.1.as_secs_f64()).collect());
    report.push_str(&format!(
        "\nMedian difference: {:+.1}% (medians {:.1} s resumed against {:.1} s uninterrupted); median of resuming's own work: {:.1}% of the uninterrupted time.\n",
        median_of(costs) * 100.0,
        resumed_median,
        whole_median,
        median_of(own) * 100.0,
    ));
    Ok(report)
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
