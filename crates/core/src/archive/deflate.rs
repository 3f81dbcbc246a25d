//! An entry's data, compressed on every core: the data is cut into fixed blocks, each block is
//! deflated on its own blocking thread and ended with a sync flush (an empty stored block, so
//! it ends on a byte boundary and does not end the stream), and the blocks are written in
//! order; a final empty block ends the stream. Concatenated this way they are one valid
//! deflate stream (RFC 1951), as pigz writes them. The blocks depend only on the data, never
//! on timing or on the number of threads, so the same entry always compresses to the same
//! bytes. Memory is bounded by the blocks in flight, never by the entry's size.

use super::format::Coding;
use crate::ports::{PortError, PortResult};
use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// The data each block holds (the last of an entry holds less).
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// A final, empty block with fixed codes: what ends a deflate stream after a sync flush.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One block's result.
struct Block {
    crc: crc32fast::Hasher,
    out: Bytes,
}

/// A block to deflate, and where its result goes.
type Job = (Bytes, oneshot::Sender<Result<Block, String>>);

/// Threads of its own that deflate blocks, exactly as many as asked: a fixed few threads keep
/// the allocator's per-thread arenas (and so the process's memory) few, where a growing
/// blocking pool would not. They end when the pool is dropped.
struct Deflaters {
    jobs: mpsc::Sender<Job>,
}

impl Deflaters {
    fn start(threads: usize) -> Deflaters {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = queue.clone();
            std::thread::spawn(move || loop {
                let job = queue.lock().map(|q| q.recv());
                match job {
                    Ok(Ok((block, done))) => {
                        let _ = done.send(deflate_block(&block));
                    }
                    _ => return,
                }
            });
        }
        Deflaters { jobs }
    }

    fn deflate(&self, block: Bytes) -> oneshot::Receiver<Result<Block, String>> {
        let (done, result) = oneshot::channel();
        // A send fails only once every thread has gone; the receiver then reports it.
        let _ = self.jobs.send((block, done));
        result
    }
}

/// Compresses (or, for a stored entry, passes through) one entry's data.
pub struct EntryCoder {
    coding: Coding,
    threads: usize,
    deflaters: Option<Deflaters>,
    pending: BytesMut,
    in_flight: VecDeque<oneshot::Receiver<Result<Block, String>>>,
    crc: crc32fast::Hasher,
    size: u64,
    compressed: u64,
}

/// What an entry came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coded {
    pub crc: u32,
    pub size: u64,
    pub compressed: u64,
}

impl EntryCoder {
    /// `threads`: blocks compressed at once (at least one).
    pub fn new(coding: Coding, threads: usize) -> EntryCoder {
        let threads = threads.max(1);
        EntryCoder {
            coding,
            threads,
            deflaters: (coding == Coding::Deflate).then(|| Deflaters::start(threads)),
            pending: BytesMut::new(),
            in_flight: VecDeque::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            compressed: 0,
        }
    }

    /// Takes `data`; returns the output that is ready, in order.
    pub async fn write(&mut self, data: &[u8]) -> PortResult<Vec<Bytes>> {
        self.size += data.len() as u64;
        if self.coding == Coding::Stored {
            self.crc.update(data);
            self.compressed += data.len() as u64;
            return Ok(vec![Bytes::copy_from_slice(data)]);
        }
        let mut ready = Vec::new();
        let mut data = data;
        while !data.is_empty() {
            let take = (BLOCK_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK_SIZE {
                let block = self.pending.split().freeze();
                self.spawn(block);
                // One block waiting per thread keeps every thread busy while the oldest is
                // written out.
                while self.in_flight.len() > self.threads * 2 {
                    ready.push(self.next_done().await?);
                }
            }
        }
        while let Some(Ok(block)) = self.in_flight.front_mut().map(|r| r.try_recv()) {
            self.in_flight.pop_front();
            ready.push(self.take(block)?);
        }
        Ok(ready)
    }

    /// Ends the entry: the rest of its output, and its CRC and sizes.
    pub async fn finish(mut self) -> PortResult<(Vec<Bytes>, Coded)> {
        let mut ready = Vec::new();
        if self.coding == Coding::Deflate {
            if !self.pending.is_empty() {
                let block = self.pending.split().freeze();
                self.spawn(block);
            }
            while !self.in_flight.is_empty() {
                ready.push(self.next_done().await?);
            }
            self.compressed += FINAL_BLOCK.len() as u64;
            ready.push(Bytes::from_static(&FINAL_BLOCK));
        }
        let coded = Coded {
            crc: self.crc.clone().finalize(),
            size: self.size,
            compressed: self.compressed,
        };
        Ok((ready, coded))
    }

    fn spawn(&mut self, block: Bytes) {
        let deflaters = self
            .deflaters
            .as_ref()
            .expect("a deflating entry has threads");
        self.in_flight.push_back(deflaters.deflate(block));
    }

    async fn next_done(&mut self) -> PortResult<Bytes> {
        let result = self.in_flight.pop_front().expect("a block in flight");
        let block = result.await.map_err(|_| {
            PortError::Rejected("compressing a block failed: its thread stopped".into())
        })?;
        self.take(block)
    }

    fn take(&mut self, block: Result<Block, String>) -> PortResult<Bytes> {
        let block = block.map_err(PortError::Rejected)?;
        self.crc.combine(&block.crc);
        self.compressed += block.out.len() as u64;
        Ok(block.out)
    }
}

/// Deflates one block at level 1 (text parts still shrink several times over, at a fraction of
/// the default level's CPU time: a function's time is its cost), ending with a sync flush.
fn deflate_block(block: &[u8]) -> Result<Block, String> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    let mut compress = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(block.len() / 3 + 64);
    let mut input = block;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = compress.total_in();
        compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(|e| format!("deflate failed: {e}"))?;
        let consumed = (compress.total_in() - before) as usize;
        input = &input[consumed..];
        // Done once all input is taken and the flush fitted (it leaves room to spare).
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    Ok(Block {
        crc,
        out: Bytes::from(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn code(coding: Coding, data: &[u8], threads: usize, piece: usize) -> (Vec<u8>, Coded) {
        let mut coder = EntryCoder::new(coding, threads);
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            for b in coder.write(chunk).await.unwrap() {
                out.extend_from_slice(&b);
            }
        }
        let (rest, coded) = coder.finish().await.unwrap();
        for b in rest {
            out.extend_from_slice(&b);
        }
        (out, coded)
    }

    /// CSV-like rows, as compressible as an export's text.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while out.len() < len {
            let line = format!(
                "{i},customer#{:09},{}.{:02},O\n",
                i * 7 % 150_000,
                i % 9_973,
                i % 100
            );
            out.extend_from_slice(line.as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_make_one_stream_whatever_the_threads_or_reads() {
        let data = sample(3 * BLOCK_SIZE + 12_345);
        let (one, coded) = code(Coding::Deflate, &data, 1, 70_000).await;
        let (four, _) = code(Coding::Deflate, &data, 4, 1_000_003).await;
        assert_eq!(one, four, "the output depends on the data alone");
        assert_eq!(coded.size, data.len() as u64);
        assert_eq!(coded.compressed, one.len() as u64);
        assert_eq!(coded.crc, crc32fast::hash(&data));
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(
            one.len() < data.len() / 2,
            "{} of {}",
            one.len(),
            data.len()
        );
    }

    #[tokio::test]
    async fn empty_and_stored_entries() {
        let (empty, coded) = code(Coding::Deflate, b"", 2, 10).await;
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(coded.crc, 0);
        let (stored, coded) = code(Coding::Stored, b"already compressed", 2, 4).await;
        assert_eq!(stored, b"already compressed");
        assert_eq!(coded.compressed, 18);
    }
}
