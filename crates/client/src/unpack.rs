//! Opening a downloaded archive: its files, each decompressed if it was compressed.

use anyhow::{bail, Context};
use std::io::Read;

/// One file from an archive, with `.gz` / `.zst` already undone (and dropped from the name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveFile {
    pub name: String,
    pub contents: Vec<u8>,
}

/// One downloaded file as the archive reader gives it: `.gz` / `.zst` undone.
pub fn decompressed(name: &str, raw: Vec<u8>) -> anyhow::Result<ArchiveFile> {
    if let Some(stem) = name.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("gunzip {name}"))?;
        return Ok(ArchiveFile {
            name: stem.into(),
            contents: out,
        });
    }
    if let Some(stem) = name.strip_suffix(".zst") {
        let out = zstd::decode_all(raw.as_slice()).with_context(|| format!("unzstd {name}"))?;
        return Ok(ArchiveFile {
            name: stem.into(),
            contents: out,
        });
    }
    Ok(ArchiveFile {
        name: name.into(),
        contents: raw,
    })
}

/// Reads a `.zip` or `.tar.gz` archive (told apart by their first bytes).
pub fn unpack(archive: &[u8]) -> anyhow::Result<Vec<ArchiveFile>> {
    let mut files = Vec::new();
    if archive.starts_with(b"PK") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
            .context("reading the zip archive")?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            let mut raw = Vec::new();
            entry.read_to_end(&mut raw)?;
            let name = entry.name()?.into_owned();
            files.push(decompressed(&name, raw)?);
        }
    } else if archive.starts_with(&[0x1f, 0x8b]) {
        // A packaged tar.gz is one gzip member per entry: read them all, as `gzip -d` does.
        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(archive));
        for entry in tar.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let mut raw = Vec::new();
            entry.read_to_end(&mut raw)?;
            files.push(decompressed(&name, raw)?);
        }
    } else {
        bail!("the download is neither a zip nor a tar.gz archive");
    }
    Ok(files)
}
