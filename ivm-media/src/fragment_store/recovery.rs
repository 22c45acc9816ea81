//! Start-up recovery: every record after the indexed end of the log (the rest of that segment
//! and all later segments) is read back and checked; whole records are indexed, and each
//! segment is cut at its first torn or corrupt record, so the writer never appends after
//! garbage. Records before the indexed end are trusted (their CRC is checked on every read).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use rusqlite::Connection;

use super::error::{FragmentStoreError, io_err};
use super::index::{self, IndexRow, LogPosition};
use super::record::{self, FLAG_FINISHED, HEADER_LEN};
use super::shared::segment_path;

/// What recovery found.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// The newest segment at or after the indexed end, and its length after truncation: where
    /// the writer appends.
    pub tail: Option<(u32, u64)>,
    /// The number to give a new segment when there is no tail.
    pub next_segment: u32,
    /// Bytes cut off torn or corrupt segment tails.
    pub truncated_bytes: u64,
    /// Records that were in the log but not in the index.
    pub recovered_records: u64,
    /// The longest record indexed, in frames.
    pub max_frames: u32,
}

/// The segment numbers present in `dir`, ascending.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<u32>, FragmentStoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|s| s.strip_suffix(".log"))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Scans the unindexed tail of the log, indexes what is whole and truncates what is not.
pub(super) fn recover(dir: &Path, conn: &mut Connection, index_db: &Path) -> Result<Recovered, FragmentStoreError> {
    let (state, max_frames) = index::load_state(conn, index_db)?;
    let indexed = state.unwrap_or_default();
    let segments = list_segments(dir)?;
    let mut out = Recovered {
        max_frames,
        ..Recovered::default()
    };
    let mut rows = Vec::new();
    let mut end = indexed;
    for &segment in segments.iter().filter(|&&s| s >= indexed.segment) {
        let path = segment_path(dir, segment);
        let start = if segment == indexed.segment { indexed.offset } else { 0 };
        let scan = scan_segment(&path, segment, start, &mut rows)?;
        if scan.len < start {
            tracing::warn!(
                segment = %path.display(),
                indexed = start,
                len = scan.len,
                "fragment segment is shorter than its index says; audio past its end is gone"
            );
        }
        let good_len = match scan.bad_at {
            Some((offset, reason)) => {
                let cut = scan.len - offset;
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    bytes = cut,
                    reason,
                    "fragment log: truncating a torn or corrupt tail"
                );
                truncate(&path, offset)?;
                out.truncated_bytes += cut;
                offset
            }
            None => scan.len,
        };
        out.tail = Some((segment, good_len));
        end = LogPosition {
            segment,
            offset: good_len,
        };
    }
    if out.tail.is_none() && segments.last().is_some_and(|&last| last < indexed.segment) {
        tracing::warn!(
            dir = %dir.display(),
            indexed_segment = indexed.segment,
            "fragment log: the newest indexed segment is missing"
        );
    }
    // A new segment (when there is no tail to append to) comes after every existing one.
    out.next_segment = segments.last().copied().unwrap_or(0).max(indexed.segment) + 1;
    out.recovered_records = rows.len() as u64;
    out.max_frames = rows.iter().map(|r| r.frame_count).fold(out.max_frames, u32::max);
    if !rows.is_empty() || (state.is_some() && end != indexed) {
        index::commit_rows(conn, index_db, &rows, end)?;
    }
    Ok(out)
}

struct Scan {
    /// The file's length before any truncation.
    len: u64,
    /// The first bad record, if any, and why.
    bad_at: Option<(u64, &'static str)>,
}

/// Reads the records of one segment from `start`, pushing an index row for each whole one.
fn scan_segment(path: &Path, segment: u32, start: u64, rows: &mut Vec<IndexRow>) -> Result<Scan, FragmentStoreError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if start >= len {
        return Ok(Scan { len, bad_at: None });
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    reader.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
    let mut pos = start;
    let mut buf = Vec::new();
    while pos < len {
        let bad = |reason| {
            Ok(Scan {
                len,
                bad_at: Some((pos, reason)),
            })
        };
        if len - pos < (HEADER_LEN + record::TRAILER_LEN) as u64 {
            return bad("torn record header");
        }
        buf.resize(HEADER_LEN, 0);
        read_exact(&mut reader, &mut buf, path)?;
        let header = match record::parse_header(&buf) {
            Ok(h) => h,
            Err(reason) => return bad(reason),
        };
        if u64::from(header.len) > len - pos {
            return bad("torn record");
        }
        buf.resize(header.len as usize, 0);
        read_exact(&mut reader, &mut buf[HEADER_LEN..], path)?;
        if let Err(reason) = record::verify(&buf) {
            return bad(reason);
        }
        rows.push(IndexRow {
            message_id: header.message_id,
            first_frame: header.first_frame,
            frame_count: header.frame_count,
            segment,
            offset: pos,
            length: header.len,
            codec: header.codec,
            finished: header.flags & FLAG_FINISHED != 0,
        });
        pos += u64::from(header.len);
    }
    Ok(Scan { len, bad_at: None })
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), FragmentStoreError> {
    reader.read_exact(buf).map_err(|e| {
        // The length was checked against the file size; a short read means the file shrank.
        let e = if e.kind() == ErrorKind::UnexpectedEof {
            std::io::Error::new(ErrorKind::UnexpectedEof, "segment shrank while being recovered")
        } else {
            e
        };
        io_err(path)(e)
    })
}

fn truncate(path: &Path, len: u64) -> Result<(), FragmentStoreError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}
