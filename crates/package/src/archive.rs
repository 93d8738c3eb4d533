//! A small, strict ZIP reader and writer for plugin packages and bundles.
//!
//! Owns: parsing the end-of-central-directory record and the central directory, refusing hostile
//! entries (unsafe paths, symlinks, duplicates, non-UTF-8 names, encryption), and inflating each
//! entry through a size-limited reader whose output is checked against the CRC-32 and the
//! declared size. Headers are never trusted for memory decisions.
//! Must not: interpret entry contents (manifest, signatures) or touch the file system.
//!
//! Written in-house instead of using the `zip` crate because that crate silently collapses
//! duplicate names and decodes non-UTF-8 names as CP437, both of which must be refused here.
//! ZIP64 archives are refused: packages are limited to far below 4 GiB.
//! Nested archives (a `.zip`/`.difypkg` stored as an entry) are *not* refused: the decoder never
//! inflates them, so they cannot expand beyond their own (limited) size, and bundles legitimately
//! carry packages as `_assets/<checksum>` entries. Directory entries are skipped (the Go writer
//! never emits them), so a hand-made ZIP with them still decodes.

use std::collections::HashSet;
use std::io::{Read, Write};

use crate::error::PackageError;
use crate::limits::DecodeLimits;

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_UTF8: u16 = 0x0800;
const UNIX_HOST: u8 = 3;
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const MSDOS_DIRECTORY: u32 = 0x10;

/// One file of an archive, in central-directory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub name: String,
    pub data: Vec<u8>,
}

/// The decoded archive: its files in central-directory order and the archive comment.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    pub entries: Vec<ArchiveEntry>,
    pub comment: Vec<u8>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Locates the end-of-central-directory record, searching backwards over the maximal comment.
fn find_eocd(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < EOCD_LEN {
        return None;
    }
    let lowest = bytes.len().saturating_sub(EOCD_LEN + u16::MAX as usize);
    let mut at = bytes.len() - EOCD_LEN;
    loop {
        if u32_at(bytes, at) == Some(EOCD_SIGNATURE) {
            let comment_len = u16_at(bytes, at + 20).unwrap_or(u16::MAX) as usize;
            if at + EOCD_LEN + comment_len <= bytes.len() {
                return Some(at);
            }
        }
        if at == lowest {
            return None;
        }
        at -= 1;
    }
}

fn invalid_or_truncated(bytes: &[u8], reason: &str) -> PackageError {
    // Something that starts like a ZIP but lost its tail was cut short.
    if u32_at(bytes, 0) == Some(LOCAL_SIGNATURE) {
        PackageError::Truncated
    } else {
        PackageError::InvalidArchive(reason.to_owned())
    }
}

/// A central-directory record, before its data is read.
struct CentralRecord {
    name: String,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    uncompressed_size: u64,
    local_header_offset: u64,
}

/// Checks an entry name: UTF-8, relative, no `..`, no backslashes or NUL.
fn checked_name(raw: &[u8]) -> Result<String, PackageError> {
    let name = std::str::from_utf8(raw).map_err(|_| PackageError::NonUtf8Name { raw: raw.to_vec() })?.to_owned();
    if name.is_empty() {
        return Err(PackageError::InvalidName { name, reason: "empty name".into() });
    }
    if name.contains('\0') {
        return Err(PackageError::InvalidName { name, reason: "contains a NUL byte".into() });
    }
    if name.contains('\\') {
        return Err(PackageError::InvalidName { name, reason: "contains a backslash".into() });
    }
    let bytes = name.as_bytes();
    let drive_letter = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with('/') || drive_letter {
        return Err(PackageError::AbsolutePath { name });
    }
    if name.split('/').any(|part| part == "..") {
        return Err(PackageError::PathTraversal { name });
    }
    Ok(name)
}

/// Parses the central directory and returns the file records (directories are skipped) and the
/// archive comment.
fn read_central_directory(bytes: &[u8], limits: &DecodeLimits) -> Result<(Vec<CentralRecord>, Vec<u8>), PackageError> {
    let eocd = find_eocd(bytes).ok_or_else(|| invalid_or_truncated(bytes, "end of central directory not found"))?;
    let disk = u16_at(bytes, eocd + 4).unwrap_or(0);
    let directory_disk = u16_at(bytes, eocd + 6).unwrap_or(0);
    let total_entries = u16_at(bytes, eocd + 10).unwrap_or(0);
    let directory_size = u32_at(bytes, eocd + 12).unwrap_or(0);
    let directory_offset = u32_at(bytes, eocd + 16).unwrap_or(0);
    let comment_len = u16_at(bytes, eocd + 20).unwrap_or(0) as usize;
    let comment = bytes[eocd + EOCD_LEN..eocd + EOCD_LEN + comment_len].to_vec();

    if disk != 0 || directory_disk != 0 {
        return Err(PackageError::InvalidArchive("multi-disk archives are not supported".into()));
    }
    if total_entries == u16::MAX || directory_size == u32::MAX || directory_offset == u32::MAX {
        return Err(PackageError::InvalidArchive("ZIP64 archives are not supported".into()));
    }
    if total_entries as usize > limits.max_entries {
        return Err(PackageError::TooManyEntries { count: total_entries as usize, limit: limits.max_entries });
    }
    let start = directory_offset as usize;
    let end = start.checked_add(directory_size as usize).filter(|end| *end <= eocd).ok_or(PackageError::Truncated)?;
    let directory = &bytes[start..end];

    let mut records = Vec::with_capacity(total_entries as usize);
    let mut seen = HashSet::with_capacity(total_entries as usize);
    let mut at = 0usize;
    let mut count = 0usize;
    while at < directory.len() {
        if u32_at(directory, at) != Some(CENTRAL_SIGNATURE) {
            return Err(PackageError::InvalidArchive(format!("bad central directory record at offset {}", start + at)));
        }
        let header = directory.get(at..at + CENTRAL_LEN).ok_or(PackageError::Truncated)?;
        let made_by_host = header[5];
        let flags = u16_at(header, 8).unwrap_or(0);
        let method = u16_at(header, 10).unwrap_or(0);
        let crc32 = u32_at(header, 16).unwrap_or(0);
        let compressed_size = u32_at(header, 20).unwrap_or(0);
        let uncompressed_size = u32_at(header, 24).unwrap_or(0);
        let name_len = u16_at(header, 28).unwrap_or(0) as usize;
        let extra_len = u16_at(header, 30).unwrap_or(0) as usize;
        let comment_len = u16_at(header, 32).unwrap_or(0) as usize;
        let external = u32_at(header, 38).unwrap_or(0);
        let local_header_offset = u32_at(header, 42).unwrap_or(0);
        let name_start = at + CENTRAL_LEN;
        let raw_name = directory.get(name_start..name_start + name_len).ok_or(PackageError::Truncated)?;
        at = name_start + name_len + extra_len + comment_len;
        if at > directory.len() {
            return Err(PackageError::Truncated);
        }
        count += 1;
        if count > limits.max_entries {
            return Err(PackageError::TooManyEntries { count, limit: limits.max_entries });
        }
        if compressed_size == u32::MAX || uncompressed_size == u32::MAX || local_header_offset == u32::MAX {
            return Err(PackageError::InvalidArchive("ZIP64 entries are not supported".into()));
        }

        let name = checked_name(raw_name)?;
        let unix_mode = (made_by_host == UNIX_HOST).then_some(external >> 16);
        let file_type = unix_mode.map(|mode| mode & S_IFMT).unwrap_or(0);
        if file_type == S_IFLNK {
            return Err(PackageError::Symlink { name });
        }
        let is_directory = name.ends_with('/') || file_type == S_IFDIR || (external & MSDOS_DIRECTORY != 0 && unix_mode.is_none());
        if is_directory {
            // Directory entries carry no data; the Go writer never emits them.
            continue;
        }
        if file_type != 0 && file_type != S_IFREG {
            return Err(PackageError::UnsupportedEntry { name, reason: format!("special file type {file_type:o}") });
        }
        if !seen.insert(name.clone()) {
            return Err(PackageError::DuplicateEntry { name });
        }
        if flags & FLAG_ENCRYPTED != 0 {
            return Err(PackageError::UnsupportedEntry { name, reason: "encrypted".into() });
        }
        if method != METHOD_STORED && method != METHOD_DEFLATED {
            return Err(PackageError::UnsupportedEntry { name, reason: format!("compression method {method}") });
        }
        records.push(CentralRecord {
            name,
            method,
            crc32,
            compressed_size: compressed_size as u64,
            uncompressed_size: uncompressed_size as u64,
            local_header_offset: local_header_offset as u64,
        });
    }
    Ok((records, comment))
}

/// Decodes a whole archive within `limits`.
pub fn read_archive(bytes: &[u8], limits: &DecodeLimits) -> Result<Archive, PackageError> {
    let (records, comment) = read_central_directory(bytes, limits)?;

    // Refuse early on what the headers declare; the real sizes are enforced while inflating.
    let declared: u64 = records.iter().map(|r| r.uncompressed_size).sum();
    if declared > limits.max_uncompressed_size {
        return Err(PackageError::UncompressedSizeExceeded { limit: limits.max_uncompressed_size });
    }

    let mut entries = Vec::with_capacity(records.len());
    let mut total: u64 = 0;
    for record in records {
        check_ratio(&record.name, record.uncompressed_size, record.compressed_size, limits)?;
        let data_start = local_data_start(bytes, &record)?;
        let data_end = data_start
            .checked_add(record.compressed_size as usize)
            .filter(|end| *end <= bytes.len())
            .ok_or(PackageError::Truncated)?;
        let compressed = &bytes[data_start..data_end];
        let budget = limits.max_uncompressed_size - total;
        let data = inflate(&record, compressed, budget, limits)?;
        total += data.len() as u64;
        entries.push(ArchiveEntry { name: record.name, data });
    }
    Ok(Archive { entries, comment })
}

fn check_ratio(name: &str, uncompressed: u64, compressed: u64, limits: &DecodeLimits) -> Result<(), PackageError> {
    if uncompressed > limits.ratio_check_threshold {
        let ratio = uncompressed / compressed.max(1);
        if ratio > limits.max_compression_ratio {
            return Err(PackageError::CompressionRatioExceeded { name: name.to_owned(), ratio, limit: limits.max_compression_ratio });
        }
    }
    Ok(())
}

fn local_data_start(bytes: &[u8], record: &CentralRecord) -> Result<usize, PackageError> {
    let offset = record.local_header_offset as usize;
    let header = bytes.get(offset..offset + LOCAL_LEN).ok_or(PackageError::Truncated)?;
    if u32_at(header, 0) != Some(LOCAL_SIGNATURE) {
        return Err(PackageError::CorruptEntry { name: record.name.clone(), reason: "bad local header signature".into() });
    }
    let name_len = u16_at(header, 26).unwrap_or(0) as usize;
    let extra_len = u16_at(header, 28).unwrap_or(0) as usize;
    Ok(offset + LOCAL_LEN + name_len + extra_len)
}

/// Inflates one entry, reading at most `budget + 1` bytes so a lying header cannot make us
/// allocate more than the limit.
fn inflate(record: &CentralRecord, compressed: &[u8], budget: u64, limits: &DecodeLimits) -> Result<Vec<u8>, PackageError> {
    let capacity = record.uncompressed_size.min(budget) as usize;
    let mut data = Vec::with_capacity(capacity);
    let read = match record.method {
        METHOD_STORED => compressed.take(budget.saturating_add(1)).read_to_end(&mut data),
        _ => flate2::read::DeflateDecoder::new(compressed).take(budget.saturating_add(1)).read_to_end(&mut data),
    };
    if let Err(error) = read {
        return Err(PackageError::CorruptEntry { name: record.name.clone(), reason: error.to_string() });
    }
    if data.len() as u64 > budget {
        return Err(PackageError::UncompressedSizeExceeded { limit: limits.max_uncompressed_size });
    }
    check_ratio(&record.name, data.len() as u64, record.compressed_size, limits)?;
    if data.len() as u64 != record.uncompressed_size {
        return Err(PackageError::CorruptEntry {
            name: record.name.clone(),
            reason: format!("size {} does not match the declared {}", data.len(), record.uncompressed_size),
        });
    }
    if crc32fast::hash(&data) != record.crc32 {
        return Err(PackageError::CorruptEntry { name: record.name.clone(), reason: "CRC-32 mismatch".into() });
    }
    Ok(data)
}

/// Writes a ZIP the way the Go packager does: the given order, deflate, files only, zero
/// modification time, and `comment` as the archive comment.
pub fn write_archive<'a, I>(entries: I, comment: &[u8]) -> Result<Vec<u8>, PackageError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut count: usize = 0;
    for (name, data) in entries {
        checked_name(name.as_bytes())?;
        let too_big = || PackageError::InvalidArchive(format!("{name}: entry too large for a ZIP without ZIP64"));
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).map_err(|e| PackageError::Io(e.to_string()))?;
        let compressed = encoder.finish().map_err(|e| PackageError::Io(e.to_string()))?;
        let crc = crc32fast::hash(data);
        let compressed_len = u32::try_from(compressed.len()).map_err(|_| too_big())?;
        let data_len = u32::try_from(data.len()).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let flags = if name.is_ascii() { 0 } else { FLAG_UTF8 };

        out.extend_from_slice(&LOCAL_SIGNATURE.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&METHOD_DEFLATED.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0u16.to_le_bytes()); // date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&compressed_len.to_le_bytes());
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);

        central.extend_from_slice(&CENTRAL_SIGNATURE.to_le_bytes());
        central.extend_from_slice(&((u16::from(UNIX_HOST) << 8) | 20).to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&METHOD_DEFLATED.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&compressed_len.to_le_bytes());
        central.extend_from_slice(&data_len.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&((S_IFREG | 0o644) << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        count += 1;
    }
    let count = u16::try_from(count).map_err(|_| PackageError::InvalidArchive("too many entries for a ZIP without ZIP64".into()))?;
    let directory_offset = u32::try_from(out.len()).map_err(|_| PackageError::InvalidArchive("archive too large".into()))?;
    let directory_size = u32::try_from(central.len()).map_err(|_| PackageError::InvalidArchive("archive too large".into()))?;
    let comment_len =
        u16::try_from(comment.len()).map_err(|_| PackageError::InvalidArchive("archive comment longer than 65535 bytes".into()))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD_SIGNATURE.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&directory_size.to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&comment_len.to_le_bytes());
    out.extend_from_slice(comment);
    Ok(out)
}

/// Reads only the archive comment (no entry is inflated).
pub fn read_comment(bytes: &[u8]) -> Result<Vec<u8>, PackageError> {
    let eocd = find_eocd(bytes).ok_or_else(|| invalid_or_truncated(bytes, "end of central directory not found"))?;
    let comment_len = u16_at(bytes, eocd + 20).unwrap_or(0) as usize;
    Ok(bytes[eocd + EOCD_LEN..eocd + EOCD_LEN + comment_len].to_vec())
}
