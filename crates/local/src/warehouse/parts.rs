//! UNLOAD's part files: the result split into parts of about `MAXFILESIZE` each, written as
//! CSV (with header), Parquet or JSON lines, compressed if asked, through the object store
//! port while the rows stream in.

use super::manifest::PartEntry;
use super::unload::UnloadPlan;
use super::upload::PartUpload;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use export_core::domain::{Compression, Format, ObjectRef};
use export_core::ports::{ObjectStore, PortError, PortResult};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `Write` the synchronous encoders write into, drained by the async side between writes
/// into the upload: the bridge that keeps memory bounded.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written since the last call.
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The text formats' compression, as a `Write` in front of the buffer.
enum Compressor {
    Plain(Buffer),
    Gzip(flate2::write::GzEncoder<Buffer>),
    Zstd(zstd::stream::write::Encoder<'static, Buffer>),
}

impl Compressor {
    fn new(compression: Compression, buffer: Buffer) -> std::io::Result<Compressor> {
        Ok(match compression {
            Compression::None => Compressor::Plain(buffer),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                buffer,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(buffer, 3)?),
        })
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Compressor::Plain(_) => Ok(()),
            Compressor::Gzip(gz) => gz.finish().map(drop),
            Compressor::Zstd(z) => z.finish().map(drop),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Compressor::Plain(b) => b.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One per open part, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Encoder {
    Text(Compressor),
    Parquet(Box<ArrowWriter<Buffer>>),
}

struct OpenPart<'a> {
    object: ObjectRef,
    upload: PartUpload<'a>,
    buffer: Buffer,
    encoder: Encoder,
    rows: u64,
    bytes: u64,
}

/// Splits one slice's share of the result into parts of at most about `max_file_size` bytes,
/// as UNLOAD does.
pub struct PartWriter<'a> {
    objects: &'a dyn ObjectStore,
    plan: &'a UnloadPlan,
    schema: SchemaRef,
    slice: usize,
    open: Option<OpenPart<'a>>,
    written: Vec<PartEntry>,
}

fn io(e: impl std::fmt::Display) -> PortError {
    PortError::Rejected(e.to_string())
}

impl<'a> PartWriter<'a> {
    pub fn new(
        objects: &'a dyn ObjectStore,
        plan: &'a UnloadPlan,
        schema: SchemaRef,
        slice: usize,
    ) -> Self {
        PartWriter {
            objects,
            plan,
            schema,
            slice,
            open: None,
            written: Vec::new(),
        }
    }

    fn part_key(&self, index: usize) -> String {
        let extension = match self.plan.format {
            Format::Parquet => ".parquet",
            _ => "",
        };
        format!(
            "{}{:04}_part_{index:02}{extension}{}",
            self.plan.target.key,
            self.slice,
            self.plan.compression.suffix()
        )
    }

    async fn open_part(&mut self) -> PortResult<()> {
        let object = ObjectRef::new(&self.plan.target.bucket, self.part_key(self.written.len()));
        let upload = PartUpload::new(self.objects, object.clone(), "application/octet-stream");
        let buffer = Buffer::default();
        let encoder = match self.plan.format {
            Format::Parquet => Encoder::Parquet(Box::new(
                ArrowWriter::try_new(buffer.clone(), self.schema.clone(), None).map_err(io)?,
            )),
            _ => Encoder::Text(Compressor::new(self.plan.compression, buffer.clone()).map_err(io)?),
        };
        self.open = Some(OpenPart {
            object,
            upload,
            buffer,
            encoder,
            rows: 0,
            bytes: 0,
        });
        Ok(())
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> PortResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open_part().await?;
        }
        let header = self.plan.header;
        let part = self.open.as_mut().expect("a part is open");
        match &mut part.encoder {
            Encoder::Text(out) => match self.plan.format {
                Format::Csv => {
                    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(header && part.rows == 0)
                        .build(out);
                    writer.write(batch).map_err(io)?;
                }
                _ => {
                    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
                    writer.write(batch).map_err(io)?;
                    writer.finish().map_err(io)?;
                }
            },
            Encoder::Parquet(writer) => writer.write(batch).map_err(io)?,
        }
        part.rows += batch.num_rows() as u64;
        let pending = part.buffer.take();
        part.bytes += pending.len() as u64;
        if !pending.is_empty() {
            part.upload.write(Bytes::from(pending)).await?;
        }
        if part.bytes >= self.plan.max_file_size {
            self.close_part().await?;
        }
        Ok(())
    }

    async fn close_part(&mut self) -> PortResult<()> {
        let Some(mut part) = self.open.take() else {
            return Ok(());
        };
        match part.encoder {
            Encoder::Text(out) => out.finish().map_err(io)?,
            Encoder::Parquet(writer) => drop(writer.close().map_err(io)?),
        }
        let rest = part.buffer.take();
        if !rest.is_empty() {
            part.upload.write(Bytes::from(rest)).await?;
        }
        let bytes = part.upload.complete().await?;
        // Every CSV part written with HEADER starts with one header line, the empty result's
        // lone part included.
        let header_line = self.plan.header && self.plan.format == Format::Csv;
        self.written.push(PartEntry {
            url: part.object.s3_url(),
            bytes,
            rows: part.rows,
            lines: part.rows + u64::from(header_line),
        });
        Ok(())
    }

    /// The name of the slice's first part: the file UNLOAD would overwrite first.
    pub fn first_part_key(&self) -> String {
        self.part_key(0)
    }

    /// Whether any row came this slice's way.
    pub fn has_rows(&self) -> bool {
        self.open.is_some() || !self.written.is_empty()
    }

    /// Closes the last part. A slice that got no rows writes nothing, unless `lone` (no slice
    /// got any): then it writes the one empty part.
    pub async fn finish(mut self, lone: bool) -> PortResult<Vec<PartEntry>> {
        if lone && !self.has_rows() {
            // No rows: still one part (a header alone, an empty Parquet file), as callers
            // expect a file to open.
            self.open_part().await?;
            let part = self.open.as_mut().expect("just opened");
            if let (Encoder::Text(out), Format::Csv, true) =
                (&mut part.encoder, self.plan.format, self.plan.header)
            {
                let empty = RecordBatch::new_empty(self.schema.clone());
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out)
                    .write(&empty)
                    .map_err(io)?;
            }
        }
        self.close_part().await?;
        Ok(self.written)
    }
}
