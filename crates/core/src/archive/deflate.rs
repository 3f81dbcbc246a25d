//! An entry's data, compressed on every core: the data is cut into fixed blocks, each block is
//! deflated on one of a fixed set of threads and ended with a sync flush (an empty stored
//! block, so it ends on a byte boundary and does not end the stream), and the blocks are
//! written in order; a final empty block ends the stream. Concatenated this way they are one
//! valid deflate stream (RFC 1951), as pigz writes them. The blocks depend only on the data,
//! never on timing or on the number of threads, so the same entry always compresses to the
//! same bytes. Memory is bounded by the blocks in flight, never by the entry's size, and the
//! buffers are reused from block to block and entry to entry, so a long run allocates the
//! same few buffers over and over instead of leaving the allocator to cope with thousands.

use super::format::Coding;
use crate::ports::{PortError, PortResult};
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

/// The data each block holds (the last of an entry holds less).
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// A final, empty block with fixed codes: what ends a deflate stream after a sync flush.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One block's result, with its input buffer handed back for the next block.
struct Block {
    crc: crc32fast::Hasher,
    out: Bytes,
    input: Vec<u8>,
}

/// A block to deflate, and where its result goes.
type Job = (Vec<u8>, oneshot::Sender<Result<Block, String>>);

/// Threads of their own that deflate blocks, exactly as many as asked, started on the first
/// block and kept for every entry of a run; they end when the pool is dropped. A fixed few
/// threads, each with one compressor and one output buffer it reuses, keep the allocator's
/// per-thread arenas (and so the process's memory) few and flat, where a growing blocking pool
/// or a compressor per block would not.
pub struct Deflaters {
    threads: usize,
    jobs: OnceLock<mpsc::Sender<Job>>,
    /// Input buffers of `BLOCK_SIZE` back from the threads, for the next blocks.
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Deflaters {
    /// A pool of `threads` threads (at least one); none starts until a block needs one.
    pub fn new(threads: usize) -> Arc<Deflaters> {
        Arc::new(Deflaters {
            threads: threads.max(1),
            jobs: OnceLock::new(),
            spare: Mutex::new(Vec::new()),
        })
    }

    /// Blocks kept in flight: one waiting per thread keeps every thread busy while the oldest
    /// is written out.
    fn depth(&self) -> usize {
        self.threads * 2
    }

    fn jobs(&self) -> &mpsc::Sender<Job> {
        self.jobs.get_or_init(|| {
            let (jobs, queue) = mpsc::channel::<Job>();
            let queue = Arc::new(Mutex::new(queue));
            for _ in 0..self.threads {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let mut deflater = Deflater::new();
                    loop {
                        let job = queue.lock().map(|q| q.recv());
                        match job {
                            Ok(Ok((block, done))) => {
                                let _ = done.send(deflater.block(block));
                            }
                            _ => return,
                        }
                    }
                });
            }
            jobs
        })
    }

    fn deflate(&self, block: Vec<u8>) -> oneshot::Receiver<Result<Block, String>> {
        let (done, result) = oneshot::channel();
        // A send fails only once every thread has gone; the receiver then reports it.
        let _ = self.jobs().send((block, done));
        result
    }

    /// An empty input buffer of `BLOCK_SIZE`.
    fn buffer(&self) -> Vec<u8> {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        spare.unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE))
    }

    fn recycle(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        if let Ok(mut spare) = self.spare.lock() {
            // The blocks in flight, the one filling, and one to spare.
            if spare.len() < self.depth() + 2 {
                spare.push(buffer);
            }
        }
    }
}

/// Compresses (or, for a stored entry, passes through) one entry's data.
pub struct EntryCoder {
    coding: Coding,
    deflaters: Arc<Deflaters>,
    pending: Vec<u8>,
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
    /// A coder whose blocks, if it deflates, go to `deflaters`.
    pub fn new(coding: Coding, deflaters: &Arc<Deflaters>) -> EntryCoder {
        EntryCoder {
            coding,
            deflaters: deflaters.clone(),
            pending: Vec::new(),
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
            if self.pending.capacity() == 0 {
                self.pending = self.deflaters.buffer();
            }
            let take = (BLOCK_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK_SIZE {
                self.spawn();
                while self.in_flight.len() > self.deflaters.depth() {
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
                self.spawn();
            }
            while !self.in_flight.is_empty() {
                ready.push(self.next_done().await?);
            }
            self.compressed += FINAL_BLOCK.len() as u64;
            ready.push(Bytes::from_static(&FINAL_BLOCK));
        }
        if self.pending.capacity() > 0 {
            self.deflaters.recycle(std::mem::take(&mut self.pending));
        }
        let coded = Coded {
            crc: self.crc.clone().finalize(),
            size: self.size,
            compressed: self.compressed,
        };
        Ok((ready, coded))
    }

    fn spawn(&mut self) {
        let block = std::mem::take(&mut self.pending);
        self.in_flight.push_back(self.deflaters.deflate(block));
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
        self.deflaters.recycle(block.input);
        Ok(block.out)
    }
}

/// One thread's compressor and output buffer, reused for every block it deflates.
struct Deflater {
    compress: Compress,
    out: Vec<u8>,
}

impl Deflater {
    fn new() -> Deflater {
        Deflater {
            // Level 1: text parts still shrink several times over, at a fraction of the
            // default level's CPU time (a function's time is its cost).
            compress: Compress::new(Compression::fast(), false),
            // Room for a block that does not compress at all (stored blocks cost 5 bytes in
            // 64 KiB) and its flush, so it is never reallocated.
            out: Vec::with_capacity(BLOCK_SIZE + BLOCK_SIZE / 1024 + 64),
        }
    }

    /// Deflates one block, ending with a sync flush; the output is copied out at its exact
    /// size, so what waits to be written holds no slack.
    fn block(&mut self, input: Vec<u8>) -> Result<Block, String> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&input);
        self.compress.reset();
        self.out.clear();
        let mut rest = &input[..];
        loop {
            if self.out.capacity() - self.out.len() < 64 {
                self.out.reserve(64 * 1024);
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(rest, &mut self.out, FlushCompress::Sync)
                .map_err(|e| format!("deflate failed: {e}"))?;
            let consumed = (self.compress.total_in() - before) as usize;
            rest = &rest[consumed..];
            // Done once all input is taken and the flush fitted (it leaves room to spare).
            if rest.is_empty() && self.out.len() < self.out.capacity() {
                break;
            }
        }
        Ok(Block {
            crc,
            out: Bytes::copy_from_slice(&self.out),
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn code(coding: Coding, data: &[u8], threads: usize, piece: usize) -> (Vec<u8>, Coded) {
        code_on(&Deflaters::new(threads), coding, data, piece).await
    }

    async fn code_on(
        deflaters: &Arc<Deflaters>,
        coding: Coding,
        data: &[u8],
        piece: usize,
    ) -> (Vec<u8>, Coded) {
        let mut coder = EntryCoder::new(coding, deflaters);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_reused_across_entries_writes_what_a_fresh_one_does() {
        let first = sample(2 * BLOCK_SIZE + 7);
        let second = sample(BLOCK_SIZE / 2);
        let pool = Deflaters::new(2);
        let (a, _) = code_on(&pool, Coding::Deflate, &first, 500_000).await;
        let (b, coded) = code_on(&pool, Coding::Deflate, &second, 500_000).await;
        assert_eq!(a, code(Coding::Deflate, &first, 2, 500_000).await.0);
        assert_eq!(b, code(Coding::Deflate, &second, 1, 500_000).await.0);
        assert_eq!(coded.crc, crc32fast::hash(&second));
        let spare = pool.spare.lock().unwrap().len();
        assert!(
            (1..=pool.depth() + 2).contains(&spare),
            "input buffers come back to the pool, a bounded few: {spare}"
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
