//! The bytes around each entry of the two archive kinds, written by hand so that an archive can
//! be continued at any entry boundary by another process: nothing here holds state that cannot
//! be rebuilt from a [`DirectoryEntry`] per entry written so far.
//!
//! - zip (PKWARE APPNOTE 6.3): per entry a local header, the data, a data descriptor (the CRC
//!   and compressed size are known only after the data); at the end the central directory,
//!   with ZIP64 records where a size, an offset or the entry count outgrows 32 (16) bits.
//! - tar.gz: per entry one gzip member (RFC 1952) holding the tar header, the data and its
//!   padding; the two zero blocks that end a tar in a last member. A gzip file may hold several
//!   members, and every gzip reader reads them as one stream.

use crate::domain::Millis;

/// An entry at or above this size gets ZIP64 fields in its local header and data descriptor;
/// the margin covers deflate's worst-case growth of incompressible data.
pub const ZIP64_ENTRY_SIZE: u64 = 0xF000_0000;
const U32_MAX: u64 = u32::MAX as u64;

/// How an entry's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Deflate,
    /// As is: for parts that are already compressed.
    Stored,
}

/// What the central directory needs of an entry once its data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub crc: u32,
    pub compressed: u64,
    pub size: u64,
    /// Where its local header starts.
    pub offset: u64,
}

/// The zip's fixed choices for one archive: when its entries were written and how they are
/// stored.
#[derive(Clone, Copy, Debug)]
pub struct ZipLayout {
    pub mtime: Millis,
    pub coding: Coding,
    /// Entries at least this large get ZIP64 local fields ([`ZIP64_ENTRY_SIZE`] except in tests).
    pub zip64_entry_size: u64,
}

impl ZipLayout {
    pub fn new(mtime: Millis, coding: Coding) -> ZipLayout {
        ZipLayout {
            mtime,
            coding,
            zip64_entry_size: ZIP64_ENTRY_SIZE,
        }
    }

    fn method(&self) -> u16 {
        match self.coding {
            Coding::Deflate => 8,
            Coding::Stored => 0,
        }
    }

    fn zip64_local(&self, size: u64) -> bool {
        size >= self.zip64_entry_size
    }

    /// The local header of an entry of `size` bytes (its size from the manifest).
    pub fn local_header(&self, name: &str, size: u64) -> Vec<u8> {
        let zip64 = self.zip64_local(size);
        let (time, date) = dos_time(self.mtime);
        let mut out = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, if zip64 { 45 } else { 20 });
        // Bit 3: sizes and CRC follow the data; bit 11: the name is UTF-8.
        put16(&mut out, 0x0808);
        put16(&mut out, self.method());
        put16(&mut out, time);
        put16(&mut out, date);
        put32(&mut out, 0);
        let unknown = if zip64 { u32::MAX } else { 0 };
        put32(&mut out, unknown);
        put32(&mut out, unknown);
        put16(&mut out, name.len() as u16);
        put16(&mut out, if zip64 { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut out, 0x0001);
            put16(&mut out, 16);
            put64(&mut out, 0);
            put64(&mut out, 0);
        }
        out
    }

    /// The data descriptor that follows an entry's data, or an error if the entry outgrew the
    /// fields its local header promised.
    pub fn data_descriptor(&self, entry: &DirectoryEntry) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(24);
        put32(&mut out, 0x0807_4b50);
        put32(&mut out, entry.crc);
        if self.zip64_local(entry.size) {
            put64(&mut out, entry.compressed);
            put64(&mut out, entry.size);
        } else {
            if entry.compressed >= U32_MAX || entry.size >= U32_MAX {
                return Err("a part is larger than its manifest entry says".into());
            }
            put32(&mut out, entry.compressed as u32);
            put32(&mut out, entry.size as u32);
        }
        Ok(out)
    }

    /// How many bytes an entry takes in the archive, header to descriptor: where the next
    /// one starts.
    pub fn entry_span(&self, name: &str, entry: &DirectoryEntry) -> u64 {
        let zip64 = self.zip64_local(entry.size);
        let header = 30 + name.len() as u64 + if zip64 { 20 } else { 0 };
        let descriptor = if zip64 { 24 } else { 16 };
        header + entry.compressed + descriptor
    }

    /// The central directory and its end records, for entries named by `name_of`, starting
    /// at `offset` (the bytes written before it).
    pub fn central_directory(
        &self,
        entries: &[DirectoryEntry],
        name_of: impl Fn(usize) -> String,
        offset: u64,
    ) -> Vec<u8> {
        let (time, date) = dos_time(self.mtime);
        let mut out = Vec::with_capacity(entries.len() * 80 + 100);
        for (index, entry) in entries.iter().enumerate() {
            let name = name_of(index);
            let mut extra = Vec::new();
            // An entry whose local header promised ZIP64 sizes (its data descriptor has 8-byte
            // sizes) gets them here too, so every reader sees one consistent entry.
            let zip64_local = self.zip64_local(entry.size);
            let big_size = entry.size >= U32_MAX || zip64_local;
            let big_compressed = entry.compressed >= U32_MAX || zip64_local;
            let big_offset = entry.offset >= U32_MAX;
            if big_size {
                put64(&mut extra, entry.size);
            }
            if big_compressed {
                put64(&mut extra, entry.compressed);
            }
            if big_offset {
                put64(&mut extra, entry.offset);
            }
            let zip64 = !extra.is_empty();
            put32(&mut out, 0x0201_4b50);
            // Made by Unix (3), so that the external attributes carry a file mode.
            put16(&mut out, 0x0300 | if zip64 { 45 } else { 20 });
            put16(&mut out, if zip64 { 45 } else { 20 });
            put16(&mut out, 0x0808);
            put16(&mut out, self.method());
            put16(&mut out, time);
            put16(&mut out, date);
            put32(&mut out, entry.crc);
            put32(
                &mut out,
                if big_compressed {
                    u32::MAX
                } else {
                    entry.compressed as u32
                },
            );
            put32(
                &mut out,
                if big_size {
                    u32::MAX
                } else {
                    entry.size as u32
                },
            );
            put16(&mut out, name.len() as u16);
            put16(
                &mut out,
                if extra.is_empty() {
                    0
                } else {
                    4 + extra.len() as u16
                },
            );
            put16(&mut out, 0); // comment
            put16(&mut out, 0); // disk
            put16(&mut out, 0); // internal attributes
            put32(&mut out, 0o100644 << 16);
            put32(&mut out, clamp32(entry.offset));
            out.extend_from_slice(name.as_bytes());
            if !extra.is_empty() {
                put16(&mut out, 0x0001);
                put16(&mut out, extra.len() as u16);
                out.extend_from_slice(&extra);
            }
        }
        let size = out.len() as u64;
        let count = entries.len() as u64;
        if count >= 0xFFFF || size >= U32_MAX || offset >= U32_MAX {
            let record_at = offset + size;
            put32(&mut out, 0x0606_4b50);
            put64(&mut out, 44);
            put16(&mut out, 0x032D);
            put16(&mut out, 45);
            put32(&mut out, 0);
            put32(&mut out, 0);
            put64(&mut out, count);
            put64(&mut out, count);
            put64(&mut out, size);
            put64(&mut out, offset);
            put32(&mut out, 0x0706_4b50);
            put32(&mut out, 0);
            put64(&mut out, record_at);
            put32(&mut out, 1);
        }
        put32(&mut out, 0x0605_4b50);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, count.min(0xFFFF) as u16);
        put16(&mut out, count.min(0xFFFF) as u16);
        put32(&mut out, clamp32(size));
        put32(&mut out, clamp32(offset));
        put16(&mut out, 0);
        out
    }
}

/// The tar header of an entry: a regular file of `size` bytes, mode 0644, written at `mtime`.
pub fn tar_header(name: &str, size: u64, mtime: Millis) -> Result<[u8; 512], String> {
    let mut header = tar::Header::new_gnu();
    header
        .set_path(name)
        .map_err(|e| format!("entry name {name}: {e}"))?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime((mtime / 1000).max(0) as u64);
    header.set_cksum();
    Ok(*header.as_bytes())
}

/// The zeros that fill a tar entry of `size` bytes out to a whole block.
pub fn tar_padding(size: u64) -> Vec<u8> {
    vec![0; ((512 - size % 512) % 512) as usize]
}

/// The two zero blocks that end a tar.
pub const TAR_END: [u8; 1024] = [0; 1024];

/// A gzip member's header: deflate, no name, no time (so the same data always gives the same
/// bytes), operating system unknown.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A gzip member's trailer: the CRC-32 and the size modulo 2^32 of what it holds.
pub fn gzip_trailer(crc: u32, size: u64) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out[4..].copy_from_slice(&(size as u32).to_le_bytes());
    out
}

fn clamp32(n: u64) -> u32 {
    if n >= U32_MAX {
        u32::MAX
    } else {
        n as u32
    }
}

/// MS-DOS time and date, as zip stores them (UTC, two-second steps, 1980 to 2107).
fn dos_time(mtime: Millis) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let at = chrono::DateTime::from_timestamp_millis(mtime).unwrap_or_default();
    let year = at.year().clamp(1980, 2107) as u16;
    let time = (at.hour() as u16) << 11 | (at.minute() as u16) << 5 | (at.second() as u16 / 2);
    let date = (year - 1980) << 9 | (at.month() as u16) << 5 | at.day() as u16;
    (time, date)
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
